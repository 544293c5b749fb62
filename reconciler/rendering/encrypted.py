"""SOPS-encrypted objects and Terraform variable files: encrypted through render, decrypted last.

Rendering (and its disk cache, the desired state's digests, approvals and PR comments) only ever
sees the encrypted form: an encrypted Secret renders, validates (without its `sops` block) and is
cached as ciphertext. The plaintext exists only when a stage context is built for a plan, an apply
or a drift check, in memory, registered for redaction.

A rendered object is decrypted as it is, MAC checked. Kustomize may have changed fields the MAC
covers (a namespace, labels); then the file it came from must pass the MAC check on its own, and
only after that are the rendered object's values decrypted without the MAC, as Flux's
kustomize-controller decrypts resources after the build.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from providers.kubernetes.schema import PlainManifest
from reconciler.rendering.manifest import Manifest
from reconciler.rendering.sops import SopsError, decrypt, decrypt_text, encrypted_format, is_mac_mismatch
from repo_schema.issues import Issue, Location

Identity = Callable[[], str]
"""Returns the age identity (resolved only when something encrypted is found)."""

AUTOLOADED_TFVARS = ("terraform.tfvars", "terraform.tfvars.json")
SOPS_CONFIG = ".sops.yaml"
MAX_CHECKED_FILES = 20_000


def is_encrypted(body: Mapping[str, Any]) -> bool:
    """Whether a rendered object carries SOPS metadata."""
    metadata = body.get("sops")
    return isinstance(metadata, dict) and "mac" in metadata


def schema_view(manifest: Manifest) -> Manifest | PlainManifest:
    """What schema validation sees: an encrypted object without its `sops` block."""
    if not is_encrypted(manifest.body):
        return manifest
    body = {key: value for key, value in manifest.body.items() if key != "sops"}
    return PlainManifest(body, manifest.location, manifest.document)


def decrypt_manifests(manifests: Mapping[str, Sequence[Manifest]], checkout: Path,
                      identity: Identity) -> dict[str, Sequence[Manifest]]:
    """Every workload's manifests with each encrypted object decrypted (SopsError names the file)."""
    if not any(is_encrypted(item.body) for items in manifests.values() for item in items):
        return dict(manifests)
    verified: set[str] = set()
    return {name: [_decrypted(item, checkout, identity, verified) if is_encrypted(item.body) else item
                   for item in items]
            for name, items in manifests.items()}


def _decrypted(manifest: Manifest, checkout: Path, identity: Identity, verified: set[str]) -> Manifest:
    source = manifest.location.file
    if (manifest.body.get("apiVersion"), manifest.body.get("kind")) != ("v1", "Secret"):
        # Only Secrets: their values are masked in every diff, plan and comment; a ConfigMap built
        # around values copied from a Secret would print them.
        raise SopsError(source, f"only v1 Secrets may be SOPS-encrypted, not {manifest.body.get('kind')!r}")
    text = json.dumps(manifest.body)
    try:
        plain = decrypt_text(text, "json", identity=identity(), where=source)
    except SopsError as error:
        if not is_mac_mismatch(error):
            raise
        _verify_source(checkout, source, identity, verified)
        plain = decrypt_text(text, "json", identity=identity(), where=source, ignore_mac=True)
    return dataclasses.replace(manifest, body=json.loads(plain))


def _verify_source(checkout: Path, source: str, identity: Identity, verified: set[str]) -> None:
    """The MAC check of the file a transformed object came from (once per file)."""
    if source in verified:
        return
    path = checkout / source
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    text_format = encrypted_format(path, text)
    if text_format is None:
        raise SopsError(source, "the rendered object is SOPS-encrypted but changed since encryption, and the file "
                                "it came from is not a SOPS file whose MAC could vouch for it")
    decrypt(path, text_format, identity=identity(), where=source)
    verified.add(source)


def encrypted_variables(checkout: Path, module: str, identity: Identity) -> dict[str, str]:
    """Terraform variables from the module's SOPS-encrypted `*.tfvars.json` files, as `TF_VAR_*`
    environment values (strings as they are, other JSON values as JSON, which Terraform parses)."""
    directory = checkout / module
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.tfvars.json")):
        where = f"{module.rstrip('/')}/{path.name}"
        text = path.read_text(encoding="utf-8", errors="replace")
        if encrypted_format(path, text) is None:
            continue
        if path.name in AUTOLOADED_TFVARS or path.name.endswith(".auto.tfvars.json"):
            raise SopsError(where, "Terraform loads this file by itself, encrypted; name it e.g. "
                                   "secrets.sops.tfvars.json (Tidegate decrypts every SOPS *.tfvars.json)")
        values = json.loads(decrypt(path, "json", identity=identity(), where=where))
        found.update({f"TF_VAR_{name}": value if isinstance(value, str) else json.dumps(value)
                      for name, value in values.items() if name != "sops"})
    return found


def unencrypted_by_rule(root: Path) -> list[Issue]:
    """Files the repo's `.sops.yaml` says are encrypted (a creation rule's `path_regex` matches
    them) that are not: committed plaintext is refused before anything renders or applies it."""
    config = root / SOPS_CONFIG
    if not config.is_file():
        return []
    patterns, issues = _creation_patterns(config)
    if not patterns:
        return issues
    for path in _repo_files(root):
        relative = path.relative_to(root).as_posix()
        rule = next((pattern for pattern in patterns if pattern.search(relative)), None)
        if rule is None or relative == SOPS_CONFIG:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if encrypted_format(path, text) is None:
            issues.append(Issue(Location(relative), "<file>", f"{SOPS_CONFIG} says files matching "
                                f"{rule.pattern!r} are SOPS-encrypted, but this one is not: encrypt it "
                                f"(sops --encrypt --in-place {relative}) before committing"))
    return issues


def _creation_patterns(config: Path) -> tuple[list[re.Pattern[str]], list[Issue]]:
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        rules = data.get("creation_rules") or [] if isinstance(data, dict) else []
        patterns = [re.compile(str(rule["path_regex"])) for rule in rules
                    if isinstance(rule, dict) and rule.get("path_regex")]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, re.error, AttributeError) as error:
        return [], [Issue(Location(SOPS_CONFIG), "creation_rules", f"cannot be read: {str(error).splitlines()[0]}")]
    return patterns, []


def _repo_files(root: Path) -> Iterator[Path]:
    for count, path in enumerate(sorted(root.rglob("*"))):
        if count >= MAX_CHECKED_FILES:
            return
        if ".git" not in path.relative_to(root).parts and path.is_file() and not path.is_symlink():
            yield path
