"""Which environments a change touches: the files and directories each environment reads.

A push to a config repo shared by many environments must not re-plan all of them: an edit to the
production overlay concerns production only, while an edit to the shared base concerns every
environment whose overlay builds on it. An environment's read set is over-approximated on purpose
(whole directories rather than single files where a tool may read any file of the directory), so
a change is never missed; it can only cause an extra, empty plan.

Entries are repo-relative POSIX paths without a trailing slash. An entry matches a changed path
when it is that path or a directory above it; the entry "" (the repo root) matches everything.

Compute the read sets on the repo as loaded at the new revision, and also at the old one when
references may have been removed (`affected(old, changed) | affected(new, changed)`); environments
that exist only at the new revision are new, and concern the caller anyway.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from reconciler.rendering.kustomization import find_kustomization, read_tree
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS
from repo_schema.loader import REPO_CONFIG_FILE, LoadedRepo
from repo_schema.paths import PathProblem, normalize, resolve_inside

_LOCAL_MODULE = re.compile(r'^\s*source\s*=\s*"(\.\.?/[^"]*)"', re.MULTILINE)


def paths_read(repo: LoadedRepo, environment: str) -> frozenset[str]:
    """The repo-relative files and directory prefixes that `environment` reads."""
    root = repo.root.resolve()
    spec = repo.environments[environment].spec
    reads = {REPO_CONFIG_FILE}
    if environment in repo.sources:
        reads.add(repo.sources[environment].file)
    reads.update(infrastructure_paths(repo, environment))
    reads.update(configuration_paths(repo, environment))
    for workload in spec.workloads:
        reads.update(_workload_paths(root, workload.path))
    return frozenset(_without_covered(reads))


def infrastructure_paths(repo: LoadedRepo, environment: str) -> frozenset[str]:
    """The Terraform root module's directory and every local module it sources (none without the stage)."""
    infrastructure = repo.environments[environment].spec.infrastructure
    return frozenset(_terraform_dirs(repo.root.resolve(), infrastructure.path) if infrastructure else ())


def configuration_paths(repo: LoadedRepo, environment: str) -> frozenset[str]:
    """The playbook's directory (its roles, group_vars, ansible.cfg) and a static inventory file."""
    configuration = repo.environments[environment].spec.configuration
    if configuration is None:
        return frozenset()
    reads = set(_safe(posixpath.dirname(configuration.playbook) or "."))
    if configuration.inventory_from.file is not None:
        reads.update(_safe(configuration.inventory_from.file))
    return frozenset(reads)


def reads_changed(repo: LoadedRepo, environment: str, changed: Iterable[str]) -> bool:
    """Whether any changed path is one `environment` reads."""
    reads = paths_read(repo, environment)
    return any(_covers(entry, path) for path in changed for entry in reads)


def affected_between(old: LoadedRepo | None, new: LoadedRepo, changed: Iterable[str] | None) -> set[str]:
    """The environments (of `new`) that a change from `old` to `new` concerns: those whose read set
    covers a changed path at either revision — a reference the change removed still concerns the
    environment that had it — and every environment when the changed paths are unknown.

    The one rule for polls and pull request previews alike."""
    if changed is None:
        return set(new.environments)
    paths = list(changed)
    names = affected(new, paths)
    if old is not None:
        names |= {name for name in affected(old, paths) if name in new.environments}
    return names


def affected(repo: LoadedRepo, changed: Iterable[str]) -> set[str]:
    """Names of the environments whose read set covers at least one changed path."""
    paths = list(changed)
    return {name for name in repo.environments if reads_changed(repo, name, paths)}


def _without_covered(entries: set[str]) -> set[str]:
    """Drop entries that a directory entry already covers, so the set reads as a short list."""
    return {entry for entry in entries if not any(other != entry and _covers(other, entry) for other in entries)}


def _covers(entry: str, path: str) -> bool:
    return entry == "" or path == entry or path.startswith(entry + "/")


def _safe(path: str, base: str = "") -> list[str]:
    """The normalised path, or nothing when it leaves the repository (the loader reports that)."""
    try:
        return [normalize(path, base=base)]
    except PathProblem:
        return []


def _terraform_dirs(root: Path, module: str) -> set[str]:
    """The root module's directory and every local module it sources, transitively."""
    found: set[str] = set()
    pending = _safe(module)
    while pending:
        directory = pending.pop()
        if directory in found:
            continue
        found.add(directory)
        for source in _local_module_sources(root, directory):
            pending.extend(_safe(source, base=directory))
    return found


def _local_module_sources(root: Path, directory: str) -> Iterator[str]:
    """`source = "./..."` / `"../..."` of the module's .tf files; nothing outside the checkout is read."""
    try:
        real, _ = resolve_inside(root, directory or ".")
    except PathProblem:
        return
    if not real.is_dir():
        return
    for name in sorted(path.name for path in real.glob("*.tf")):
        try:
            file, _ = resolve_inside(root, posixpath.join(directory, name))
        except PathProblem:
            continue
        if file.is_file():
            yield from _LOCAL_MODULE.findall(file.read_text(errors="replace"))


def _workload_paths(root: Path, path: str) -> set[str]:
    """The workload directory, plus for Kustomize every directory and file its tree references."""
    reads = set(_safe(path))
    if not reads:
        return reads
    directory = next(iter(reads))
    if find_kustomization(root, directory) is None:
        return reads
    try:
        tree = read_tree(root, directory, DEFAULT_RENDER_LIMITS)
    except (PathProblem, ValueError):
        return reads
    reads.update(node.directory for node in tree.nodes)
    reads.update(tree.files)
    return reads
