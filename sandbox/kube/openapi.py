"""`/openapi/v3`: the index and one document per built-in group-version, from the 1.37 schemas.

kubectl reads these to learn that the server validates fields (`fieldValidation` on PATCH) and to
find the strategic-merge metadata (`x-kubernetes-patch-merge-key`/`-strategy`) for client-side
apply. Schemas are the `kubernetes-validate` definitions turned back into OpenAPI 3 components.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from sandbox.kube.types import ResourceType, definitions

QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _convert(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/$defs/", "#/components/schemas/")
            elif key == "type" and isinstance(value, list):
                kinds = [v for v in value if v != "null"]
                out[key] = kinds[0] if len(kinds) == 1 else kinds
            elif key == "oneOf" and isinstance(value, list) and len(value) == 2 \
                    and {str(v.get("type")) for v in value if isinstance(v, dict)} == {"string", "integer"}:
                out["x-kubernetes-int-or-string"] = True
            else:
                out[key] = _convert(value)
        if out.get("type") == ["string", "integer"] or out.get("type") == ["integer", "string"]:
            out.pop("type")
            out["x-kubernetes-int-or-string"] = True
        return out
    if isinstance(node, list):
        return [_convert(v) for v in node]
    return node


@lru_cache(maxsize=1)
def components() -> dict[str, Any]:
    schemas = {}
    for name, schema in definitions().items():
        converted = _convert(schema)
        props = converted.get("properties") or {}
        for meta in ("apiVersion", "kind"):
            if isinstance(props.get(meta), dict):
                props[meta].pop("enum", None)
        schemas[name] = converted
    return schemas


def _gvk(rtype: ResourceType) -> dict[str, str]:
    return {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}


def _params() -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for name in QUERY_PARAMS]


def _schema_name(rtype: ResourceType) -> str | None:
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (rtype.group, rtype.version, rtype.kind):
                return name
    return None


def group_version_document(types: list[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rtype in types:
        prefix = f"/api/{rtype.version}" if not rtype.group else f"/apis/{rtype.group}/{rtype.version}"
        scope = f"{prefix}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"{prefix}/{rtype.plural}"
        ref = _schema_name(rtype)
        body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}} if ref else {}

        def op(action: str, rtype: ResourceType = rtype, body: dict[str, Any] = body) -> dict[str, Any]:
            operation: dict[str, Any] = {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": _gvk(rtype),
                                         "parameters": _params(), "responses": {"200": {"description": "OK"}}}
            if action in ("put", "post", "patch") and body:
                operation["requestBody"] = body
            return operation

        paths[scope] = {"get": op("list"), "post": op("post")}
        paths[f"{scope}/{{name}}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"),
                                      "delete": op("delete")}
        for sub in rtype.subresources:
            paths[f"{scope}/{{name}}/{sub}"] = {"get": op("get"), "put": op("put"), "patch": op("patch")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.1"}, "paths": paths,
            "components": {"schemas": components()}}


_DOCUMENTS: dict[str, bytes] = {}


def document_bytes(group: str, version: str, types: list[ResourceType]) -> bytes:
    """The encoded document of a built-in group-version (the same bytes for every server of the process)."""
    key = f"{group}/{version}"
    if key not in _DOCUMENTS:
        builtin = [t for t in types if not t.custom]
        _DOCUMENTS[key] = json.dumps(group_version_document(builtin), separators=(",", ":")).encode()
    return _DOCUMENTS[key]


def index(groups: dict[str, list[str]], has_builtin: dict[tuple[str, str], bool]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, versions in groups.items():
        for version in versions:
            if not has_builtin.get((group, version)):
                continue
            path = f"api/{version}" if not group else f"apis/{group}/{version}"
            digest = hashlib.sha512(path.encode() + b"v1.37.1").hexdigest()[:128].upper()
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
