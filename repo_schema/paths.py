"""Paths named by a config repo must stay inside its checkout.

A config repo is trusted to run Terraform and Ansible, but paths in it are still hostile input
(DESIGN.md, "Security model"): a `..`, an absolute path or a symlink to `/etc` must never make
Tidegate read a file the repo does not contain. The loader and rendering both resolve paths here.

Paths are handled as checkout-relative POSIX strings (what users write and what issues print);
real filesystem paths appear only at the moment of opening.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PureWindowsPath


class PathProblem(ValueError):
    """A path or file Tidegate refuses to read; the message is meant for users."""


class UnsafePath(PathProblem):
    """A path that is absolute, leaves the checkout, or resolves outside it through a symlink."""


def normalize(path: str, *, base: str = "") -> str:
    """Join `path` to the checkout-relative directory `base` and normalize it lexically.

    Raises UnsafePath for absolute paths and for `..` that climbs above the checkout root.
    Returns "" for the root itself.
    """
    if not path or "\x00" in path:
        raise UnsafePath("empty path" if not path else "path contains a NUL byte")
    if path.startswith(("/", "\\")) or PureWindowsPath(path).drive or path.startswith("~"):
        raise UnsafePath(f"{path!r} is absolute; paths are relative to the repository root")
    joined = posixpath.normpath(posixpath.join(base, path))
    if joined == ".." or joined.startswith("../"):
        raise UnsafePath(f"{path!r} leaves the repository (it climbs above its root with '..')")
    return "" if joined == "." else joined


def resolve_inside(root: Path, path: str, *, base: str = "") -> tuple[Path, str]:
    """The real path of `path` and its normalized checkout-relative form.

    `root` must already be resolved. Every symlink along the way is followed, and the result must
    still be inside the checkout, so a link to `/etc` or to `../../other-repo` is refused.
    """
    relative = normalize(path, base=base)
    real = (root / relative).resolve()
    if real != root and not real.is_relative_to(root):
        raise UnsafePath(f"{relative!r} is or goes through a symlink that resolves outside the repository")
    return real, relative


def links_leaving(directory: Path) -> list[str]:
    """The symlinks under `directory` (its own paths, relative to it, sorted) that resolve outside
    it or do not resolve at all: a Terraform module is copied into a workspace, and a copy that
    followed such a link would carry in whatever the link points at (`secret.tf -> /data/secret.key`)."""
    root = directory.resolve()
    found: list[str] = []
    for path in sorted(directory.rglob("*")):
        if not path.is_symlink():
            continue
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            found.append(path.relative_to(directory).as_posix())
            continue
        if target != root and not target.is_relative_to(root):
            found.append(path.relative_to(directory).as_posix())
    return found
