"""Rendering one workload directory into the ordered manifests a plan is computed from.

The renderer is chosen by what the directory holds: a kustomization file makes it a Kustomize
workload; otherwise it is a plain directory of YAML files and Jinja templates. Namespaces are not
injected here (the workloads stage does it), so the digest says what the repo says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reconciler.rendering.directory import render_directory
from reconciler.rendering.kustomization import find_kustomization, read_tree
from reconciler.rendering.kustomize import render_kustomize
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS, RenderLimits
from reconciler.rendering.manifest import Manifest, digest_manifests, find_duplicates
from reconciler.rendering.paths import RenderProblem
from repo_schema.issues import Issue, Location
from repo_schema.paths import resolve_inside

RendererKind = Literal["kustomize", "directory", "invalid"]


@dataclass(frozen=True)
class RenderedWorkload:
    """The manifests of one workload path, their digest, and every issue found rendering them."""

    path: str
    renderer: RendererKind
    manifests: tuple[Manifest, ...]
    digest: str
    issues: tuple[Issue, ...]

    @property
    def ok(self) -> bool:
        return not self.issues


def render_workload(
    checkout: Path,
    path: str,
    variables: Mapping[str, Any],
    *,
    limits: RenderLimits = DEFAULT_RENDER_LIMITS,
) -> RenderedWorkload:
    """Render the workload at checkout-relative `path`; never raises for anything the repo holds."""
    root = checkout.resolve()
    try:
        real, relative = resolve_inside(root, path)
    except RenderProblem as error:
        return _failed(path, Issue(Location(path), "path", str(error)))
    if not real.is_dir():
        return _failed(relative, Issue(Location(relative or "."), "path", "workload path is not a directory"))
    renderer: RendererKind
    if find_kustomization(root, relative) is not None:
        renderer = "kustomize"
        manifests, issues = render_kustomize(root, read_tree(root, relative, limits), limits)
    else:
        renderer = "directory"
        manifests, issues = render_directory(root, relative, variables, limits)
    if len(manifests) > limits.max_manifests:
        issues.append(Issue(Location(relative or "."), "<workload>",
                            f"more than {limits.max_manifests} manifests in one workload"))
        manifests = manifests[: limits.max_manifests]
    issues += find_duplicates(manifests)
    return RenderedWorkload(relative, renderer, tuple(manifests), digest_manifests(manifests),
                            tuple(sorted(set(issues))))


def _failed(path: str, issue: Issue) -> RenderedWorkload:
    return RenderedWorkload(path, "invalid", (), digest_manifests([]), (issue,))
