"""Server-side apply and managedFields, following structured-merge-diff's rules on the 1.37 schemas.

A field set is a set of paths; each path is a tuple of fieldsV1 tokens (`f:name`, `k:{"name":"web"}`,
`v:"value"`), ending in `.` for a granular map, list or list item that is owned as a node. Structs
are never owned as nodes; atomic maps and lists, scalars and empty objects are leaves.

- Update operations (POST, PUT, non-apply PATCH) give the writing manager every field they
  changed and take those fields from the other managers.
- Apply merges the applied configuration into the live object (list-maps by their keys, sets by
  value, atomic values replaced), owns exactly the applied fields, removes fields it applied before
  and no longer applies (unless another manager owns them), and answers 409 with the API server's
  conflict message when it would change a field another manager owns, unless `force=true`.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.kube.clone import clone
from sandbox.kube.types import ResourceType, definitions, schema_for

Path = tuple[str, ...]
Obj = dict[str, Any]
MISSING: Any = object()

SERVER_METADATA = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                             "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"})
FREE_FORM: Obj = {"x-kubernetes-preserve-unknown-fields": True}


def _resolve(node: Any) -> Obj:
    if not isinstance(node, dict):
        return FREE_FORM
    schema: Obj = node
    hops = 0
    while "$ref" in schema and hops < 20:
        found = definitions().get(str(schema["$ref"]).rsplit("/", 1)[-1])
        if not isinstance(found, dict):
            return FREE_FORM
        schema = found
        hops += 1
    for key in ("allOf", "anyOf"):
        options = schema.get(key)
        if isinstance(options, list) and len(options) == 1:
            return _resolve(options[0])
    return schema


def _child(schema: Obj, key: str) -> Obj:
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        return _resolve(props[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return _resolve(extra)
    return FREE_FORM


def _is_struct(schema: Obj) -> bool:
    return isinstance(schema.get("properties"), dict) and not schema.get("x-kubernetes-preserve-unknown-fields")


def _item_key(item: Any, keys: list[str]) -> str:
    values: Obj = {}
    for key in keys:
        value = item.get(key) if isinstance(item, dict) else None
        if value is None and key == "protocol":
            value = "TCP"  # defaulted before the key is computed on a real server
        if value is not None:
            values[key] = value
    return "k:" + json.dumps(values, separators=(",", ":"))


def field_set(value: Any, schema: Obj, prefix: Path = ()) -> set[Path]:
    schema = _resolve(schema)
    if isinstance(value, dict):
        if schema.get("x-kubernetes-map-type") == "atomic" or not value:
            return {prefix}
        if not _is_struct(schema) and not isinstance(schema.get("additionalProperties"), dict) \
                and not schema.get("x-kubernetes-preserve-unknown-fields") and schema.get("type") != "object" \
                and "object" not in (schema.get("type") or []):
            return {prefix}
        out: set[Path] = set() if _is_struct(schema) or not prefix else {(*prefix, ".")}
        for key, child in value.items():
            out |= field_set(child, _child(schema, key), (*prefix, f"f:{key}"))
        return out
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if not value or list_type not in ("map", "set"):
            return {prefix}
        out = {(*prefix, ".")}
        if list_type == "set":
            return out | {(*prefix, "v:" + json.dumps(item, separators=(",", ":"))) for item in value}
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        items = _resolve(schema.get("items"))
        for item in value:
            item_prefix = (*prefix, _item_key(item, keys))
            out.add((*item_prefix, "."))
            if isinstance(item, dict):
                for key, child in item.items():
                    out |= field_set(child, _child(items, key), (*item_prefix, f"f:{key}"))
        return out
    return {prefix}


def object_schema(rtype: ResourceType, crd: Obj | None) -> Obj:
    if rtype.custom:
        for entry in ((crd or {}).get("spec") or {}).get("versions") or []:
            if entry.get("name") == rtype.version:
                schema = (entry.get("schema") or {}).get("openAPIV3Schema")
                if isinstance(schema, dict):
                    return {**schema, "properties": {**(schema.get("properties") or {}), "metadata": {
                        "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}}}
        return {"type": "object", "properties": {
            "metadata": {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": FREE_FORM, "status": FREE_FORM}, "additionalProperties": FREE_FORM}
    return schema_for(rtype.group, rtype.version, rtype.kind) or FREE_FORM


def tracked(obj: Obj, status: bool | None) -> Obj:
    """The part of an object managedFields track: no apiVersion/kind or server metadata; status or not."""
    out: Obj = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if status is True and key != "status":
            continue
        if status is False and key == "status":
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in SERVER_METADATA}
            if meta:
                out[key] = meta
            continue
        out[key] = value
    return out


def value_at(obj: Any, path: Path) -> Any:
    current = obj
    for token in path:
        if token == ".":
            break
        if token.startswith("f:"):
            if not isinstance(current, dict) or token[2:] not in current:
                return MISSING
            current = current[token[2:]]
        elif token.startswith("k:"):
            wanted = json.loads(token[2:])
            if not isinstance(current, list):
                return MISSING
            found = [i for i in current if isinstance(i, dict)
                     and json.loads(_item_key(i, list(wanted))[2:]) == wanted]
            if not found:
                return MISSING
            current = found[0]
        elif token.startswith("v:"):
            value = json.loads(token[2:])
            if not isinstance(current, list) or value not in current:
                return MISSING
            current = value
    return current


def remove_path(obj: Any, path: Path) -> None:
    tokens = [t for t in path if t != "."]
    if not tokens:
        return
    parent = value_at(obj, tuple(tokens[:-1]))
    last = tokens[-1]
    if parent is MISSING:
        return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        wanted = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict)
                                              and json.loads(_item_key(i, list(wanted))[2:]) == wanted)]
    elif last.startswith("v:") and isinstance(parent, list):
        value = json.loads(last[2:])
        parent[:] = [i for i in parent if i != value]


def merge(live: Any, applied: Any, schema: Obj) -> Any:
    schema = _resolve(schema)
    if isinstance(applied, dict) and isinstance(live, dict) and schema.get("x-kubernetes-map-type") != "atomic":
        out = dict(live)
        for key, value in applied.items():
            out[key] = merge(live[key], value, _child(schema, key)) if key in live else clone(value)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            return list(live) + [clone(v) for v in applied if v not in live]
        if list_type == "map":
            keys = list(schema.get("x-kubernetes-list-map-keys") or [])
            items = _resolve(schema.get("items"))
            result = list(live)
            for item in applied:
                key = _item_key(item, keys)
                index = next((n for n, e in enumerate(result) if _item_key(e, keys) == key), None)
                if index is None:
                    result.append(clone(item))
                else:
                    result[index] = merge(result[index], item, items)
            return result
    return clone(applied)


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for token in path:
            node = node.setdefault(token, {})
    return root


def from_fields_v1(fields: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(fields, dict):
        return out
    for token, children in fields.items():
        path = (*prefix, token)
        if token == "." or not children:
            out.add(path)
        else:
            out |= from_fields_v1(children, path)
    return out


def path_string(path: Path) -> str:
    """structured-merge-diff's rendering of a path: `.spec.containers[name="web"].image`."""
    out = ""
    for token in path:
        if token == ".":
            continue
        if token.startswith("f:"):
            out += "." + token[2:]
        elif token.startswith("k:"):
            keys = json.loads(token[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in keys.items()) + "]"
        elif token.startswith("v:"):
            out += "[=" + token[2:] + "]"
    return out


def _covers(owned: set[Path], path: Path) -> bool:
    """True when `owned` holds `path`, or anything under it."""
    base = path[:-1] if path and path[-1] == "." else path
    return any(p[:len(base)] == base for p in owned)


class Conflict(Exception):
    def __init__(self, conflicts: list[tuple[Obj, Path]]) -> None:
        super().__init__("apply conflict")
        self.conflicts = conflicts


def manager_label(entry: Obj) -> str:
    label = json.dumps(entry.get("manager", ""))
    if entry.get("subresource"):
        label += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == "Update":
        label += f" using {entry.get('apiVersion', '')}"  # manager identifiers carry no time
    return label


def conflict_message(conflicts: list[tuple[Obj, Path]]) -> str:
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {manager_label(entry)}: {path_string(path)}"
    grouped: dict[str, list[Path]] = {}
    for entry, path in conflicts:
        grouped.setdefault(manager_label(entry), []).append(path)
    lines: list[str] = []
    for label in sorted(grouped):
        lines.append(f"conflicts with {label}:")
        lines.extend(f"- {path_string(p)}" for p in grouped[label])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _entries(obj: Obj | None) -> list[Obj]:
    meta = (obj or {}).get("metadata") or {}
    return [dict(e) for e in meta.get("managedFields") or [] if isinstance(e, dict)]


def _same_manager(entry: Obj, manager: str, operation: str, subresource: str) -> bool:
    return (entry.get("manager") == manager and entry.get("operation") == operation
            and entry.get("subresource", "") == subresource)


def _finish(entries: list[tuple[Obj, set[Path]]], new_obj: Obj, old_entries: list[Obj], stamp: str) -> list[Obj]:
    out: list[Obj] = []
    for entry, paths in entries:
        alive = {p for p in paths if value_at(new_obj, p) is not MISSING}
        if not alive:
            continue
        fields = to_fields_v1(alive)
        previous = next((e for e in old_entries if e.get("manager") == entry.get("manager")
                         and e.get("operation") == entry.get("operation")
                         and e.get("subresource", "") == entry.get("subresource", "")), None)
        if previous is not None and previous.get("fieldsV1") == fields:
            out.append(previous)
            continue
        updated = {**entry, "time": stamp, "fieldsType": "FieldsV1", "fieldsV1": fields}
        out.append(updated)
    return out


def _ordered(entry: Obj) -> Obj:
    keys = ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource")
    return {k: entry[k] for k in keys if k in entry}


def record_update(rtype: ResourceType, schema: Obj, old: Obj | None, new: Obj, manager: str, subresource: str,
                  stamp: str) -> list[Obj]:
    """The managedFields after an Update operation by `manager`."""
    status_only: bool | None = True if subresource == "status" else (False if rtype.has_status else None)
    old_set = field_set(tracked(old, status_only), schema) if old is not None else set()
    new_part = tracked(new, status_only)
    new_set = field_set(new_part, schema)
    old_part = tracked(old, status_only) if old is not None else {}
    changed = {p for p in new_set if value_at(old_part, p) != value_at(new_part, p)
               or (p[-1:] == (".",) and p not in old_set)}
    removed = old_set - new_set
    old_entries = _entries(old)
    entries: list[tuple[Obj, set[Path]]] = []
    mine: set[Path] = set()
    for entry in old_entries:
        owned = from_fields_v1(entry.get("fieldsV1"))
        if _same_manager(entry, manager, "Update", subresource):
            mine = owned
            continue
        entries.append((entry, owned - changed - removed))
    if changed or mine:
        base = {"manager": manager, "operation": "Update", "apiVersion": rtype.group_version}
        if subresource:
            base["subresource"] = subresource
        entries.append((base, (mine | changed) - removed))
    return [_ordered(e) for e in _finish(entries, new, old_entries, stamp)]


def apply(rtype: ResourceType, schema: Obj, live: Obj | None, applied: Obj, manager: str, force: bool,
          subresource: str, stamp: str) -> Obj:
    """The object after `manager` applies `applied` (raises Conflict); managedFields included."""
    status_only: bool | None = True if subresource == "status" else (False if rtype.has_status else None)
    applied_part = tracked(applied, status_only)
    applied_set = field_set(applied_part, schema)
    old_entries = _entries(live)
    base_live: Obj = clone(live) if live is not None else {}
    conflicts: list[tuple[Obj, Path]] = []
    others: list[tuple[Obj, set[Path]]] = []
    previous: set[Path] = set()
    for entry in old_entries:
        owned = from_fields_v1(entry.get("fieldsV1"))
        if _same_manager(entry, manager, "Apply", subresource):
            previous = owned
            continue
        others.append((entry, owned))
    live_part = tracked(base_live, status_only)
    for entry, owned in others:
        for path in sorted(applied_set & owned):
            if path[-1:] == (".",):
                continue
            if value_at(live_part, path) != value_at(applied_part, path):
                conflicts.append((entry, path))
    if conflicts and not force:
        raise Conflict(conflicts)
    taken = {path for _entry, path in conflicts}
    merged = merge(base_live, {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}, schema) \
        if live is not None else clone(applied)
    if not isinstance(merged, dict):
        merged = {}
    merged.setdefault("metadata", {})
    for key in ("apiVersion", "kind"):
        if key in applied:
            merged[key] = applied[key]
    other_owned: set[Path] = set()
    for _entry, owned in others:
        other_owned |= owned - taken
    for path in sorted(previous - applied_set, key=len, reverse=True):
        if not _covers(other_owned, path) and not _covers(applied_set, path):
            remove_path(merged, path)
    entries: list[tuple[Obj, set[Path]]] = [(entry, owned - taken) for entry, owned in others]
    base = {"manager": manager, "operation": "Apply", "apiVersion": rtype.group_version}
    if subresource:
        base["subresource"] = subresource
    position = next((n for n, e in enumerate(old_entries) if _same_manager(e, manager, "Apply", subresource)), None)
    if position is None:
        entries.insert(0, (base, applied_set))
    else:
        entries.insert(position, (base, applied_set))
    merged["metadata"]["managedFields"] = [_ordered(e) for e in _finish(entries, merged, old_entries, stamp)]
    return merged
