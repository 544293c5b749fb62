"""Paths inside a checkout: rendering reads only what the config repo itself contains.

Rendering input is hostile (DESIGN.md, "Security model"): a workload path, a kustomization
reference or a template include must not reach `/etc/passwd` through `..`, an absolute path or a
symlink planted in the repo, nor hang a worker on a FIFO or exhaust it with a huge file. Every file
rendering opens goes through `resolve_inside` and `read_limited`; every directory it lists goes
through `list_files`.

Paths are handled as checkout-relative POSIX strings (what users write and what issues print);
real filesystem paths appear only at the moment of opening.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repo_schema.issues import Issue, Location
from repo_schema.paths import PathProblem, UnsafePath, resolve_inside

RenderProblem = PathProblem
"""A path or file rendering refuses (the same type the loader uses for unsafe paths)."""


class FileTooLarge(RenderProblem):
    """A file above the size cap: refused before it is read."""


def is_hidden(name: str) -> bool:
    """Dotfiles (`.git`, `.env`, editor swap files) are never rendered."""
    return name.startswith(".")


def read_limited(real: Path, relative: str, max_bytes: int) -> bytes:
    """Read a regular file of at most `max_bytes`; size is checked before reading anything."""
    try:
        info = real.stat()
    except FileNotFoundError:
        raise RenderProblem(f"{relative!r} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise RenderProblem(f"{relative!r} is not a regular file")
    if info.st_size > max_bytes:
        raise FileTooLarge(f"file is {info.st_size} bytes; the limit is {max_bytes}")
    with real.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew between stat and read
        raise FileTooLarge(f"file is larger than the limit of {max_bytes} bytes")
    return data


def decode(data: bytes, relative: str) -> str:
    """Manifests and templates are UTF-8, as kubectl expects."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RenderProblem(f"not UTF-8 text (byte {error.start})") from None


@dataclass
class FileListing:
    """Regular files under a directory, checkout-relative and sorted, and what was refused."""

    files: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    truncated: bool = False


def list_files(
    root: Path, directory: str, *, max_files: int, include: Callable[[str], bool] = lambda _: True
) -> FileListing:
    """Every non-hidden regular file below `directory` (recursively) for which `include` holds.

    Symlinks are followed only while they stay inside the checkout; a link pointing outside is an
    issue naming the link. Directory cycles through symlinks are visited once.
    """
    listing = FileListing()
    start, _ = resolve_inside(root, directory or ".")
    _walk(root, start, directory, include, max_files, {start}, listing)
    listing.files.sort()
    return listing


def _walk(
    root: Path,
    real_dir: Path,
    relative_dir: str,
    include: Callable[[str], bool],
    max_files: int,
    visited: set[Path],
    listing: FileListing,
) -> None:
    try:
        entries = sorted(os.scandir(real_dir), key=lambda entry: entry.name)
    except OSError as error:
        listing.issues.append(Issue(Location(relative_dir or "."), "<directory>", f"cannot list: {error}"))
        return
    for entry in entries:
        if listing.truncated:
            return
        if is_hidden(entry.name):
            continue
        relative = posixpath.join(relative_dir, entry.name) if relative_dir else entry.name
        try:
            real, _ = resolve_inside(root, relative)
        except UnsafePath as error:
            listing.issues.append(Issue(Location(relative), "<file>", str(error)))
            continue
        if real.is_dir():
            if real not in visited:
                visited.add(real)
                _walk(root, real, relative, include, max_files, visited, listing)
        elif real.is_file() and include(relative):
            if len(listing.files) >= max_files:
                listing.issues.append(
                    Issue(Location(relative), "<file>", f"more than {max_files} files in one workload")
                )
                listing.truncated = True
                return
            listing.files.append(relative)
