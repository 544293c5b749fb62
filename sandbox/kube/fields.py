"""Known fields: pruning what the schema does not know, and `fieldValidation` (Strict, Warn, Ignore).

A real API server decodes built-in kinds into Go structs, so unknown fields never reach storage;
custom resources are pruned by their structural schema unless it preserves unknown fields. What
was dropped is reported as the API server does: `Strict` fails with 400 `strict decoding error:
unknown field "spec.foo"`, `Warn` (the default) answers with `Warning: 299 - "unknown field …"`
headers, `Ignore` says nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.kube import errors
from sandbox.kube.types import ResourceType, definitions, schema_for

VALIDATION_MODES = ("Strict", "Warn", "Ignore")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        resolved = definitions().get(ref)
        if not isinstance(resolved, dict):
            return {}
        schema = resolved
        seen += 1
    for key in ("allOf", "anyOf"):
        options = schema.get(key)
        if isinstance(options, list) and len(options) == 1 and isinstance(options[0], dict):
            return _resolve(options[0])
    return schema


def prune(value: Any, schema: dict[str, Any], path: str, unknown: list[str], structural: bool = False) -> Any:
    """`value` without the fields `schema` does not know; their paths are appended to `unknown`.

    `structural` (custom resources): an object schema without properties keeps no fields.
    """
    schema = _resolve(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-embedded-resource"):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, dict):
            out: dict[str, Any] = {}
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else key
                if key in props:
                    out[key] = prune(child, props[key], child_path, unknown, structural)
                elif isinstance(extra, dict):
                    out[key] = prune(child, extra, child_path, unknown, structural)
                elif extra is True:
                    out[key] = child
                else:
                    unknown.append(child_path)
            return out
        if isinstance(extra, dict):
            return {k: prune(v, extra, f"{path}.{k}" if path else k, unknown, structural) for k, v in value.items()}
        if structural and extra is not True and schema.get("type") == "object":
            unknown.extend(f"{path}.{key}" if path else key for key in value)
            return {}
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], f"{path}[{index}]", unknown, structural)
                for index, item in enumerate(value)]
    return value


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            schema = ((entry.get("schema") or {}).get("openAPIV3Schema"))
            return schema if isinstance(schema, dict) else None
    return None


def check_fields(rtype: ResourceType, obj: dict[str, Any], mode: str, crd: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """(the pruned object, warnings to send); raises 400 BadRequest in Strict mode when fields are unknown."""
    if mode not in VALIDATION_MODES:
        raise errors.bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", '
                                 '"Strict", "Warn"')
    if rtype.custom:
        schema = crd_schema(crd, rtype.version) if crd is not None else None
        if schema is None:
            return obj, []
        schema = {**schema, "properties": {**(schema.get("properties") or {}), "apiVersion": {"type": "string"},
                                           "kind": {"type": "string"},
                                           "metadata": {"$ref": "#/$defs/"
                                                        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}}}
    else:
        found = schema_for(rtype.group, rtype.version, rtype.kind)
        if found is None:
            return obj, []
        schema = found
    unknown: list[str] = []
    pruned = prune(obj, schema, "", unknown, structural=rtype.custom)
    if not unknown:
        return obj, []
    if mode == "Strict":
        raise errors.bad_request(f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                                 "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown))
    warnings = [f'unknown field "{p}"' for p in unknown] if mode == "Warn" else []
    return pruned, warnings


_JSON_KINDS = {str: "string", bool: "bool", int: "number", float: "number", dict: "object", list: "array"}


def _schema_types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {str(t) for t in declared if t != "null"}
    return set()


def _matches(value: Any, types: set[str]) -> bool:
    if not types:
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, dict):
        return "object" in types
    if isinstance(value, list):
        return "array" in types
    return True


def _go_type(schema: dict[str, Any], ref: str | None) -> str:
    types = _schema_types(schema)
    if ref:
        package = ref.split(".")[-2] if ref.count(".") >= 2 else ""
        return f"{package}.{ref.rsplit('.', 1)[-1]}"
    if "integer" in types:
        return str(schema.get("format") or "int64")
    if "number" in types:
        return "float64"
    if "boolean" in types:
        return "bool"
    if "array" in types:
        items = schema.get("items") or {}
        ref_name = str(items.get("$ref", "")).rsplit("/", 1)[-1] if isinstance(items, dict) else ""
        return "[]" + _go_type(_resolve(items) if isinstance(items, dict) else {}, ref_name or None)
    if "object" in types and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _go_type(schema["additionalProperties"], None)
    return "string" if "string" in types else "interface {}"


def first_type_error(value: Any, schema: dict[str, Any], path: str, struct: str, ref: str | None = None
                     ) -> tuple[str, str, Any, dict[str, Any], str | None] | None:
    """(path, Go struct, value, schema, $ref) of the first value whose JSON type the schema does not allow."""
    if value is None:
        return None
    if "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
    resolved = _resolve(schema)
    if resolved.get("x-kubernetes-preserve-unknown-fields") or resolved.get("oneOf") or resolved.get("anyOf") \
            or resolved.get("x-kubernetes-int-or-string"):
        return None
    if not _matches(value, _schema_types(resolved)):
        return path, struct, value, resolved, ref
    if isinstance(value, dict):
        props = resolved.get("properties")
        extra = resolved.get("additionalProperties")
        here = ref.rsplit(".", 1)[-1] if ref else struct
        for key, child in value.items():
            child_schema = props.get(key) if isinstance(props, dict) else None
            child_path = f"{path}.{key}" if path else key
            if child_schema is None and isinstance(extra, dict):
                child_schema, child_path = extra, path  # Go names the map field, not the key
            if isinstance(child_schema, dict):
                found = first_type_error(child, child_schema, child_path, here)
                if found:
                    return found
    elif isinstance(value, list) and isinstance(resolved.get("items"), dict):
        for item in value:
            found = first_type_error(item, resolved["items"], path, struct)
            if found:
                return found
    return None


def check_types(rtype: ResourceType, obj: dict[str, Any], crd: dict[str, Any] | None) -> None:
    """Reject values of the wrong JSON type as the API server does: a decoding 400, or a 422 for custom resources."""
    if rtype.custom:
        schema = crd_schema(crd, rtype.version) if crd is not None else None
        if schema is None:
            return
        found = first_type_error({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")},
                                 schema, "", rtype.kind)
        if found:
            path, _struct, value, expected, _ref = found
            wanted = sorted(_schema_types(expected))[0]
            shown = f'"{value}"' if isinstance(value, str) else json.dumps(value)
            raise errors.invalid(rtype, str((obj.get("metadata") or {}).get("name", "")), [errors.FieldError(
                "Invalid value", path, f"{path} in body must be of type {wanted}: \"{_JSON_KINDS.get(type(value))}\"",
                shown if not isinstance(value, str) else value)])
        return
    schema = schema_for(rtype.group, rtype.version, rtype.kind)
    if schema is None:
        return
    found = first_type_error(obj, schema, "", rtype.kind)
    if found:
        path, struct, value, expected, ref = found
        raise errors.bad_request(
            f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: json: cannot unmarshal '
            f"{_JSON_KINDS.get(type(value), 'value')} into Go struct field {struct}.{path} of type "
            f"{_go_type(expected, ref)}")
