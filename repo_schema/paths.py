"""Paths named by a config repo must stay inside its checkout.

A config repo is trusted to run Terraform and Ansible, but paths in it are still hostile input:
a `..` or a symlink to `/etc` must never make Tidegate read a file the repo does not contain.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A path that is absolute, climbs out with `..`, or resolves outside through a symlink."""


def resolve_inside(root: Path, relative: str) -> Path:
    """Return the real path of `relative` under `root`, or raise UnsafePath saying why not."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith("~"):
        raise UnsafePath(f"{relative!r} is absolute; paths are relative to the repo root")
    depth = 0
    for part in pure.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise UnsafePath(f"{relative!r} climbs out of the repo with '..'")
    real_root = root.resolve()
    target = (real_root / pure).resolve()
    if target != real_root and real_root not in target.parents:
        raise UnsafePath(f"{relative!r} resolves outside the repo through a symlink (to {target})")
    return target


def ensure_inside(root: Path, path: Path) -> None:
    """Raise UnsafePath if an already-joined `path` (e.g. found by walking a tree) escapes `root`."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        raise UnsafePath(f"{str(shown)!r} is a symlink that resolves outside the repo (to {real})")
