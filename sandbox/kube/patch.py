"""The three client patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge follows the built-in types' `patchStrategy`/`patchMergeKey` tags for the lists that
have them (containers by name, container ports by containerPort, Service ports by port, env by
name, volumes by name, volumeMounts by mountPath, conditions by type, …); other lists are replaced.
Directives: `$patch: replace|delete|merge` in maps and list items, `$deleteFromPrimitiveList/<f>`,
`$setElementOrder/<f>` (accepted, order kept) and `$retainKeys`.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from sandbox.kube.clone import clone
from sandbox.kube.errors import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.apply_patch(target, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}",
                       {}) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise bad_request(f"json patch is malformed: {exc}") from exc
    if not isinstance(result, dict):
        raise bad_request("json patch result is not an object")
    return result


# patchMergeKey of the lists whose patchStrategy is "merge", by field name (context-free where unambiguous).
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "conditions": "type",
    "imagePullSecrets": "name", "hostAliases": "ip", "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey", "resourceClaims": "name", "schedulingGates": "name",
    "addresses": "type", "taints": "key",
}
# Lists of scalars with patchStrategy "merge".
MERGE_PRIMITIVES = frozenset({"finalizers"})
_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})


def _merge_key(path: tuple[str, ...]) -> str | None:
    name = path[-1]
    if name == "ports":
        return "containerPort" if len(path) >= 2 and path[-2] in _CONTAINER_LISTS else "port"
    if name == "conditions" and "status" not in path:
        return None
    if name == "addresses" and (len(path) < 2 or path[-2] != "status"):
        return None
    if name == "taints" and (len(path) < 2 or path[-2] != "spec"):
        return None
    return MERGE_KEYS.get(name)


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            current = result.get(field)
            if isinstance(current, list) and isinstance(value, list):
                result[field] = [item for item in current if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_path = (*path, key)
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child_path)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    name = path[-1]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [clone(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    existing = list(current) if isinstance(current, list) else []
    if name in MERGE_PRIMITIVES:
        out = list(existing)
        for item in patch:
            if item not in out:
                out.append(clone(item))
        return out
    key = _merge_key(path)
    if key is None:
        return [clone(item) for item in patch]
    out = [clone(item) for item in existing]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((i for i, e in enumerate(out) if isinstance(e, dict) and e.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            merged_new = strategic_merge({}, item, path)
            out.append(merged_new)
        else:
            out[index] = strategic_merge(out[index], item, path)
    return out
