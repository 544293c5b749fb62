"""Rendered Kubernetes objects that remember where in the config repo they were written.

Everything after rendering (schema validation, plans, diffs, PR comments) talks about a manifest's
fields; a `Manifest` carries enough to point each field back at a file:line so users fix the right
line, whichever renderer produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from repo_schema.documents import SourceDocument
from repo_schema.issues import FieldPath, Issue, Location, format_field


@dataclass(frozen=True, order=True)
class ObjectIdentity:
    """What makes an object unique in a cluster; printed as DESIGN.md's `group/kind/namespace/name`."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Manifest:
    """One rendered object, its source location, and per-field locations when they are known.

    `document` maps field paths to lines: for plain YAML it is the very document the object was
    read from; for Kustomize output it records only the fields whose rendered value is still the
    one written in a resource or patch file (others fall back to their nearest known parent).
    `None` when no field can be placed (generated objects, templates whose output shifted lines).
    """

    body: dict[str, Any]
    location: Location
    document: SourceDocument | None = None

    @property
    def identity(self) -> ObjectIdentity:
        """Namespace is "" when the manifest leaves it to the workload (injected later)."""
        return identity_of(self.body)

    def locate(self, path: FieldPath, *, key: bool = False) -> Location:
        """The best known location of a field of this object."""
        return self.document.locate(path, key=key) if self.document is not None else self.location


def identity_of(body: dict[str, Any]) -> ObjectIdentity:
    api_version = str(body.get("apiVersion", ""))
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return ObjectIdentity(
        group=api_version.rpartition("/")[0],
        kind=str(body.get("kind", "")),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name", "")),
    )


def check_object(document: SourceDocument, *, max_depth: int) -> list[Issue]:
    """Why a YAML document cannot be a Kubernetes object; empty when it can.

    Depth is checked first and without recursion: aliases can nest a small document deeply, and
    every later stage (JSON, schema validation) walks objects recursively.
    """
    data = document.data
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__} scalar"
        return [Issue(document.start, "<document>", f"a manifest must be a mapping, not {kind}")]
    if _deeper_than(data, max_depth):
        return [Issue(document.start, "<document>", f"object nested deeper than {max_depth} levels")]
    issues = [*_required_strings(document, data), *_json_problems(document, data, ())]
    kind = str(data.get("kind", ""))
    if kind == "List" or (kind.endswith("List") and isinstance(data.get("items"), list)):
        issues.append(document.issue(("kind",), "List objects are not supported; "
                                                "write one document per object"))
    return issues


def _required_strings(document: SourceDocument, data: dict[Any, Any]) -> list[Issue]:
    issues: list[Issue] = []
    for field in ("apiVersion", "kind"):
        issues += _non_empty_string(document, data, (field,))
    metadata = data.get("metadata")
    if metadata is None:
        issues.append(document.issue(("metadata",), 'missing required field "metadata"'))
    elif not isinstance(metadata, dict):
        issues.append(document.issue(("metadata",), "metadata must be a mapping"))
    else:
        issues += _non_empty_string(document, data, ("metadata", "name"))
    return issues


def _non_empty_string(document: SourceDocument, data: dict[Any, Any], path: FieldPath) -> list[Issue]:
    value: Any = data
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return [document.issue(path, f'missing required field "{path[-1]}"')]
    if not isinstance(value, str) or not value.strip():
        return [document.issue(path, f"{format_field(path)} must be a non-empty string")]
    return []


def _json_problems(document: SourceDocument, value: Any, path: FieldPath) -> list[Issue]:
    """Kubernetes objects are JSON: string keys and finite numbers only."""
    issues: list[Issue] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str):
                message = f"key {key!r} must be a string (quote it)"
                issues.append(document.issue((*path, key), message, key=True))
            issues += _json_problems(document, child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            issues += _json_problems(document, child, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        issues.append(document.issue(path, f"{value} is not a JSON number"))
    return issues


def _deeper_than(value: Any, limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current if isinstance(current, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def manifests_from_documents(
    documents: Iterable[SourceDocument], *, max_depth: int
) -> tuple[list[Manifest], list[Issue]]:
    """Objects read 1:1 from a file: each keeps its document, so every field maps to its line."""
    manifests: list[Manifest] = []
    issues: list[Issue] = []
    for document in documents:
        problems = check_object(document, max_depth=max_depth)
        if problems:
            issues += problems
            continue
        manifests.append(Manifest(body=document.data, location=document.start, document=document))
    return manifests, issues


def find_duplicates(manifests: Sequence[Manifest]) -> list[Issue]:
    """The same object twice in one workload: the later would silently win at apply time."""
    first: dict[ObjectIdentity, Manifest] = {}
    issues: list[Issue] = []
    for manifest in manifests:
        identity = manifest.identity
        if identity in first:
            where = first[identity].location
            issues.append(Issue(manifest.location, "metadata.name",
                                f"duplicate object {identity} (also defined at {where})"))
        else:
            first[identity] = manifest
    return issues


def canonical_json(value: Any) -> str:
    """One text per value (sorted keys, no spaces, UTF-8): the input of every digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_manifests(manifests: Sequence[Manifest]) -> str:
    """Digest of the ordered objects only: where they were written does not change what applies."""
    text = canonical_json([manifest.body for manifest in manifests])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
