"""Offline provider installation: find providers in filesystem mirrors, write the CLI config.

Mirror roots come, in order, from the repo's `pluginMirror.paths`, the setting
`TIDEGATE_TERRAFORM_PLUGIN_DIRS`, and the directories terraform itself searches on Linux
(`~/.terraform.d/plugins`, `$XDG_DATA_HOME/terraform/plugins`, each `$XDG_DATA_DIRS` entry's
`terraform/plugins`). A mirror root uses terraform's layout: `HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/`
(unpacked) or `HOST/NAMESPACE/TYPE/terraform-provider-TYPE_VERSION_OS_ARCH.zip` (packed).
No path is hard-coded here beyond those standard places; `find_mirror_roots` searches the machine
for a mirror when none of them holds one and nothing is configured.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from providers.terraform.runner import TerraformError

DEFAULT_HOST = "registry.terraform.io"
BUILTIN = "terraform.io/builtin/terraform"

_REQUIRED_PROVIDERS = re.compile(r"required_providers\s*\{", re.MULTILINE)
_SOURCE = re.compile(r'\bsource\s*=\s*"([^"]+)"')
_PACKED = re.compile(r"^terraform-provider-(?P<type>[^_]+)_(?P<version>[^_]+)_(?P<target>\w+_\w+)\.zip$")


class ProviderNotFound(TerraformError):
    """A provider the module needs is in none of the mirrors (and the registry is not allowed)."""

    def __init__(self, providers: Sequence[str], searched: Sequence[Path], target: str):
        self.providers = list(providers)
        self.searched = list(searched)
        where = ", ".join(str(path) for path in searched) or "(no directories)"
        names = ", ".join(self.providers)
        super().__init__(
            f"provider {names} ({target}) not found in any plugin mirror; searched: {where}. "
            "Unpack it as HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/ under one of them, or add a mirror root "
            "to TIDEGATE_TERRAFORM_PLUGIN_DIRS"
        )


@dataclass(frozen=True)
class MirroredProvider:
    source: str  # e.g. registry.terraform.io/hashicorp/aws
    version: str
    target: str  # e.g. linux_amd64
    root: Path  # the mirror root that holds it


def current_target() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def standard_plugin_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """The implied local mirror directories terraform searches on Unix, in its order."""
    source = os.environ if env is None else env
    home = Path(source.get("HOME") or Path.home())
    data_home = Path(source.get("XDG_DATA_HOME") or home / ".local" / "share")
    data_dirs = [Path(p) for p in (source.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":") if p]
    return [home / ".terraform.d" / "plugins", data_home / "terraform" / "plugins",
            *(d / "terraform" / "plugins" for d in data_dirs)]


def plugin_dirs(configured: Iterable[str | Path] = (), env: Mapping[str, str] | None = None) -> list[Path]:
    """Configured mirror roots first, then the standard ones; duplicates dropped, order kept."""
    seen: dict[Path, None] = {}
    for path in [*(Path(p).expanduser() for p in configured), *standard_plugin_dirs(env)]:
        seen.setdefault(path, None)
    return list(seen)


_NOT_SEARCHED_AT_TOP = frozenset({"proc", "sys", "dev", "run", "tmp"})
_NOT_SEARCHED = frozenset({"site-packages", "node_modules", "__pycache__"})


def find_mirror_roots(top: Path = Path("/"), max_depth: int = 6) -> list[Path]:
    """Directories under `top` laid out as provider mirrors (a `registry.terraform.io` directory
    holding a provider package for this machine), for a machine whose mirror is neither configured
    nor in one of terraform's standard places. Hidden directories, virtual file systems, `/tmp` and
    Python package trees are not searched; a mirror root deeper than `max_depth` is not found."""
    found: list[Path] = []
    base = len(top.parts)
    for current, dirs, _files in os.walk(top):
        here = Path(current)
        if DEFAULT_HOST in dirs:
            dirs.remove(DEFAULT_HOST)
            if discover([here]):
                found.append(here)
        depth = len(here.parts) - base
        dirs[:] = [] if depth >= max_depth else [
            name for name in dirs if not name.startswith(".") and name not in _NOT_SEARCHED
            and not (depth == 0 and name in _NOT_SEARCHED_AT_TOP)]
    return sorted(found)


def normalise_source(source: str) -> str:
    """`hashicorp/aws` -> `registry.terraform.io/hashicorp/aws`; `aws` -> the hashicorp namespace."""
    parts = source.strip().lower().split("/")
    if len(parts) == 1:
        parts = ["hashicorp", *parts]
    if len(parts) == 2:
        parts = [DEFAULT_HOST, *parts]
    return "/".join(parts)


def discover(roots: Iterable[Path], target: str | None = None) -> list[MirroredProvider]:
    """Every provider package for `target` (default: this machine) found under the roots."""
    wanted = target or current_target()
    found: list[MirroredProvider] = []
    for root in roots:
        if not root.is_dir():
            continue
        for type_dir in sorted(root.glob("*/*/*")):
            if not type_dir.is_dir():
                continue
            source = "/".join(type_dir.relative_to(root).parts).lower()
            for entry in sorted(type_dir.iterdir()):
                packed = _PACKED.match(entry.name)
                if entry.is_dir() and (entry / wanted).is_dir():
                    found.append(MirroredProvider(source, entry.name, wanted, root))
                elif packed and packed["target"] == wanted and entry.is_file():
                    found.append(MirroredProvider(source, packed["version"], wanted, root))
    return found


def required_sources(module_dir: Path) -> list[str]:
    """Provider sources named in the module's `required_providers` blocks (read without terraform)."""
    sources: set[str] = set()
    for path in sorted(module_dir.glob("*.tf")):
        text = path.read_text(errors="replace")
        for match in _REQUIRED_PROVIDERS.finditer(text):
            block = _balanced_block(text, match.end() - 1)
            sources.update(normalise_source(s) for s in _SOURCE.findall(block))
    sources.discard(BUILTIN)
    return sorted(sources)


def _balanced_block(text: str, start: int) -> str:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index + 1]
    return text[start:]


def check_available(required: Iterable[str], roots: Sequence[Path], target: str | None = None) -> None:
    """Raise ProviderNotFound naming every required provider no mirror holds."""
    present = {p.source for p in discover(roots, target)}
    missing = sorted(set(required) - present)
    if missing:
        raise ProviderNotFound(missing, roots, target or current_target())


def cli_config(roots: Sequence[Path], *, offline: bool = True, target: str | None = None) -> str:
    """The text of a CLI config whose `provider_installation` uses the mirrors that exist.

    Each mirror root includes exactly the providers it holds; unless offline, a final `direct`
    block lets terraform install anything else from its registry as usual.
    """
    providers = discover(roots, target)
    by_root: dict[Path, set[str]] = {}
    for provider in providers:
        by_root.setdefault(provider.root, set()).add(provider.source)
    lines = ["# Written by Tidegate for one workspace; do not edit.", "provider_installation {"]
    for root, sources in by_root.items():
        lines += ["  filesystem_mirror {", f"    path    = {json.dumps(str(root))}",
                  f"    include = {json.dumps(sorted(sources))}", "  }"]
    if not offline:
        mirrored = sorted({p.source for p in providers})
        lines += ["  direct {", f"    exclude = {json.dumps(mirrored)}", "  }"]
    if not by_root and offline:  # an empty block would mean "the registry": name the roots instead
        for root in roots:
            lines += ["  filesystem_mirror {", f"    path = {json.dumps(str(root))}", "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"
