"""Field-level source locations for objects that a tool (Kustomize) rewrote.

`kubectl kustomize` prints objects without saying where each field came from. A field whose
rendered value is exactly the value written in a patch or resource file was, in practice, written
there; `trace_fields` records those fields' locations (patches first: they win over bases) and
leaves every other field to fall back to its nearest placed parent. So an error in an overlay's
`replicas: "three"` patch points at the patch's line, not at the base's `replicas: 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from repo_schema.documents import SourceDocument
from repo_schema.issues import FieldPath, Location

# (document, path in that document, value at that path)
_Candidate = tuple[SourceDocument, FieldPath, Any]


def trace_fields(
    body: dict[str, Any], sources: Sequence[SourceDocument], *, file: str, start: Location
) -> SourceDocument:
    """A document for `body` whose locations come from `sources`, most authoritative first."""
    traced = SourceDocument(file=file, index=0, data=body, start=start)
    candidates: list[_Candidate] = [(source, (), source.data) for source in sources
                                    if isinstance(source.data, dict)]
    _trace(body, (), candidates, traced)
    return traced


def _trace(value: Any, path: FieldPath, candidates: list[_Candidate], traced: SourceDocument) -> None:
    if not candidates:
        return
    source, source_path, _ = candidates[0]
    if path:
        traced.values[path] = source.values.get(source_path, source.start)
        if source_path in source.keys:
            traced.keys[path] = source.keys[source_path]
    if isinstance(value, dict):
        for key, child in value.items():
            _trace(child, (*path, key), _children_by_key(candidates, key, child), traced)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _trace(child, (*path, index), _children_by_item(candidates, index, child), traced)


def _children_by_key(candidates: list[_Candidate], key: Any, child: Any) -> list[_Candidate]:
    found: list[_Candidate] = []
    for source, source_path, source_value in candidates:
        if isinstance(source_value, dict) and key in source_value and _same(source_value[key], child):
            found.append((source, (*source_path, key), source_value[key]))
    return found


def _children_by_item(candidates: list[_Candidate], index: int, child: Any) -> list[_Candidate]:
    """List items are matched by `name` when they have one (containers, ports, volumes …),
    since strategic merge patches insert and reorder them; otherwise by position."""
    name = child.get("name") if isinstance(child, dict) else None
    found: list[_Candidate] = []
    for source, source_path, source_value in candidates:
        if not isinstance(source_value, list):
            continue
        position = _position_of(source_value, name) if name is not None else index
        if position is not None and position < len(source_value) and _same(source_value[position], child):
            found.append((source, (*source_path, position), source_value[position]))
    return found


def _position_of(items: list[Any], name: Any) -> int | None:
    for position, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == name:
            return position
    return None


def _same(written: Any, rendered: Any) -> bool:
    """Containers of the same shape may hold the field; scalars must be the very value written."""
    if isinstance(written, dict) or isinstance(rendered, dict):
        return isinstance(written, dict) and isinstance(rendered, dict)
    if isinstance(written, list) or isinstance(rendered, list):
        return isinstance(written, list) and isinstance(rendered, list)
    return type(written) is type(rendered) and bool(written == rendered)
