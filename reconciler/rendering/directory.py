"""Plain directories: `*.yaml`/`*.yml` files and Jinja templates, recursively, sorted by path.

A directory is the simplest workload: what is in the files is what is applied, in path order, so
the order (and the digest) does not depend on the filesystem.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.rendering.kustomization import KUSTOMIZATION_FILES
from reconciler.rendering.limits import RenderLimits
from reconciler.rendering.lines import align_lines, relocate_document, relocate_issue
from reconciler.rendering.manifest import Manifest, check_object, manifests_from_documents
from reconciler.rendering.paths import RenderProblem, decode, list_files, read_limited
from reconciler.rendering.templates import TemplateRenderer, is_template
from repo_schema.documents import SourceDocument, read_documents
from repo_schema.issues import Issue, Location
from repo_schema.paths import resolve_inside

YAML_SUFFIXES = (".yaml", ".yml")


def is_rendered(path: str) -> bool:
    """Files a directory workload renders; anything else (README.md, scripts) is ignored."""
    return path.endswith(YAML_SUFFIXES) or is_template(path)


def render_directory(
    root: Path, directory: str, variables: Mapping[str, Any], limits: RenderLimits
) -> tuple[list[Manifest], list[Issue]]:
    """Every manifest of the directory's YAML files and templates, in path order."""
    listing = list_files(root, directory, max_files=limits.max_files,
                         include=lambda path: is_rendered(path) or _is_kustomization(path))
    issues = list(listing.issues)
    manifests: list[Manifest] = []
    templates = TemplateRenderer(root, directory, variables, limits,
                                 templates=[path for path in listing.files if is_template(path)])
    for relative in listing.files:
        if len(manifests) > limits.max_manifests:
            break
        if _is_kustomization(relative):
            issues.append(Issue(Location(relative), "<file>",
                                "a kustomization inside a plain directory is not rendered; point a "
                                "workload at its directory instead"))
            continue
        found, problems = (_from_template(templates, relative, limits) if is_template(relative)
                           else _from_yaml(root, relative, limits))
        manifests += found
        issues += problems
    return manifests, issues


def _is_kustomization(path: str) -> bool:
    return posixpath.basename(path) in KUSTOMIZATION_FILES


def _from_yaml(root: Path, relative: str, limits: RenderLimits) -> tuple[list[Manifest], list[Issue]]:
    try:
        real, _ = resolve_inside(root, relative)
        text = decode(read_limited(real, relative, limits.file.max_bytes), relative)
    except RenderProblem as error:
        return [], [Issue(Location(relative), "<file>", str(error))]
    documents, issues = read_documents(text, relative, limits=limits.file)
    manifests, problems = manifests_from_documents(documents, max_depth=limits.max_depth)
    return manifests, issues + problems


def _from_template(
    templates: TemplateRenderer, relative: str, limits: RenderLimits
) -> tuple[list[Manifest], list[Issue]]:
    text, issues = templates.render(relative)
    if text is None:
        return [], issues
    documents, read_issues = read_documents(text, relative, limits=limits.file)
    lines = align_lines(templates.source(relative), text)
    if lines is None:
        return _unaligned(documents, read_issues, relative, limits.max_depth)
    relocated = [relocate_document(document, lines) for document in documents]
    manifests, problems = manifests_from_documents(relocated, max_depth=limits.max_depth)
    return manifests, [relocate_issue(issue, lines) for issue in read_issues] + problems


def _unaligned(
    documents: list[SourceDocument], read_issues: list[Issue], relative: str, max_depth: int
) -> tuple[list[Manifest], list[Issue]]:
    """Output too large to align with the template: place everything at the template's line 1 and
    say which output line was meant, rather than print a line number that points elsewhere."""
    top = Location(relative)
    issues = [_at_top(issue, top) for issue in read_issues]
    manifests: list[Manifest] = []
    for document in documents:
        problems = check_object(document, max_depth=max_depth)
        if problems:
            issues += [_at_top(problem, top) for problem in problems]
        else:
            manifests.append(Manifest(body=document.data, location=top))
    return manifests, issues


def _at_top(issue: Issue, top: Location) -> Issue:
    return Issue(top, issue.field, f"{issue.message} (line {issue.location.line} of the rendered output)")
