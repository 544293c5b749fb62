"""Offline validation of manifests against the Kubernetes 1.37 OpenAPI schemas, in strict mode.

`tidegate validate` must catch what the API server would reject (`replicas: "three"`) and what it
would silently drop (`replicaz: 3`, an unknown field: strict mode turns it into an error) without
a cluster. The schemas are the `kubernetes-validate` package's bundled `v1.37.0-local-strict` set,
pinned with the kubectl that renders Kustomize. `kubernetes_validate.validate()` re-reads and
re-registers the 1.8 MB definitions file on every call; here the registry is built once per process
and one validator per (apiVersion, kind), so a thousand manifests validate in well under a second.

Every error is reported (not just the first), each at the line of the offending field.

Custom resources are accepted when a CustomResourceDefinition for their group and kind is in the
same manifest set (or passed in `crds`), and checked against the served version's
`openAPIV3Schema` with the API server's rules: unknown fields are errors unless the schema says
`x-kubernetes-preserve-unknown-fields`.

This module takes plain inputs (`ManifestLike`): providers sit below the reconciler.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Protocol

import jsonschema
from referencing import Registry, Resource

from repo_schema.documents import SourceDocument
from repo_schema.issues import FieldPath, Issue, Location, format_field

KUBERNETES_VERSION = "1.37"
SCHEMA_SET = "v1.37.0-local-strict"
_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = _DEFINITIONS_URI + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CRD_API_VERSION = "apiextensions.k8s.io/v1"
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
_GROUP = re.compile(r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)?$")
_VERSION = re.compile(r"^v[0-9a-z]{1,30}$")
_MAX_MESSAGE = 240

Validator = Any  # a jsonschema validator instance (jsonschema ships no type hints)


class ManifestLike(Protocol):
    """What validation needs of a manifest: the object and where its fields were written."""

    @property
    def body(self) -> Mapping[str, Any]: ...

    @property
    def location(self) -> Location: ...

    @property
    def document(self) -> SourceDocument | None: ...


@dataclass(frozen=True)
class PlainManifest:
    """A ready-made `ManifestLike` for callers that hold a bare object and a location."""

    body: Mapping[str, Any]
    location: Location
    document: SourceDocument | None = None


def validate_manifests(
    manifests: Iterable[ManifestLike], *, crds: Iterable[Mapping[str, Any]] = ()
) -> list[Issue]:
    """Every schema issue of every manifest, sorted by location.

    `crds` adds CustomResourceDefinitions known from elsewhere (other workloads of the environment,
    or the live cluster) to those found among `manifests`.
    """
    items = list(manifests)
    custom = _CustomKinds()
    for item in items:
        custom.add(item.body, item)
    for body in crds:
        custom.add(body, None)
    issues: list[Issue] = []
    for item in items:
        try:
            issues += _validate_one(item, custom)
        except RecursionError:  # validation recurses per level; a hostile object may nest deeply
            issues.append(Issue(item.location, "<document>", "object nested too deeply to validate"))
    return sorted(set(issues))


def _validate_one(manifest: ManifestLike, custom: _CustomKinds) -> list[Issue]:
    body = manifest.body
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [Issue(manifest.location, "<document>", "apiVersion and kind must be strings")]
    validator = builtin_validator(api_version, kind)
    if validator is not None:
        return _builtin_issues(validator, manifest)
    found = custom.validator(api_version, kind)
    if isinstance(found, _Refusal):
        return [_locate_issue(manifest, (found.field,), found.message)]
    if found is None:
        return []
    try:
        return _issues_of(found, manifest)
    except RecursionError:
        raise
    except Exception as error:  # a user-written CRD schema may break the validator (bad regex …)
        return [_locate_issue(manifest, (), f"cannot validate against the CustomResourceDefinition's "
                                            f"schema: {_shorten(str(error))}")]


def _locate(manifest: ManifestLike, path: FieldPath, *, key: bool = False) -> Location:
    document = manifest.document
    return document.locate(path, key=key) if document is not None else manifest.location


def _locate_issue(manifest: ManifestLike, path: FieldPath, message: str) -> Issue:
    return Issue(_locate(manifest, path), format_field(path), message)


# --- built-in kinds ---------------------------------------------------------------------------


@functools.cache
def _registry() -> Registry:
    """The shared `_definitions.json`, loaded and crawled once per process."""
    definitions = json.loads(_schema_file("_definitions.json").read_text())
    resource = Resource.from_contents(definitions)
    registry: Registry = Registry().with_resource(_DEFINITIONS_URI, resource).crawl()
    return registry


def _schema_file(name: str) -> Traversable:
    return files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_SET / name


@functools.lru_cache(maxsize=1024)
def builtin_validator(api_version: str, kind: str) -> Validator | None:
    """The strict validator of a built-in kind of Kubernetes 1.37, or None if it has no schema.

    The file name follows kubernetes-validate (`<kind>-<first group label>-<version>.json`); the
    schema's own group-version-kind must then match exactly, so `apps.example.com/v1 Deployment`
    is not mistaken for `apps/v1`.
    """
    group, _, version = api_version.rpartition("/")
    if not (_KIND.match(kind) and _GROUP.match(group) and _VERSION.match(version)):
        return None
    stem = f"{kind.lower()}-{group.split('.')[0]}-{version}" if group else f"{kind.lower()}-{version}"
    resource = _schema_file(f"{stem}.json")
    if not resource.is_file():
        return None
    schema = json.loads(resource.read_text())
    wanted = {"group": group, "version": version, "kind": kind}
    if wanted not in schema.get("x-kubernetes-group-version-kind", []):
        return None
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# --- errors to issues -------------------------------------------------------------------------


_VALID: dict[str, None] = {}
"""Digests of built-in-kind bodies this process found valid (insertion-ordered, bounded)."""
_VALID_SIZE = 200_000
_VALID_LOCK = threading.Lock()


def _builtin_issues(validator: Validator, manifest: ManifestLike) -> list[Issue]:
    """`_issues_of`, remembering bodies found valid: the built-in schemas never change within a
    process, so a commit that changes one manifest validates one manifest, not five thousand.
    Bodies with issues are validated every time (their issues carry locations)."""
    key = hashlib.sha256(json.dumps(manifest.body, sort_keys=True, separators=(",", ":"),
                                    default=str).encode()).hexdigest()
    if key in _VALID:
        return []
    issues = _issues_of(validator, manifest)
    if not issues:
        with _VALID_LOCK:
            if len(_VALID) >= _VALID_SIZE:
                _VALID.pop(next(iter(_VALID)))
            _VALID[key] = None
    return issues


def _issues_of(validator: Validator, manifest: ManifestLike) -> list[Issue]:
    issues: list[Issue] = []
    for error in validator.iter_errors(manifest.body):
        issues += _issues_for(error, manifest)
    return issues


def _issues_for(error: Any, manifest: ManifestLike) -> list[Issue]:
    path: FieldPath = tuple(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        return [Issue(_locate(manifest, (*path, name), key=True), format_field((*path, name)),
                      f'unknown field "{name}"') for name in _unexpected(instance, error.schema)]
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]
        return [Issue(_locate(manifest, path), format_field((*path, name)),
                      f'missing required field "{name}"') for name in missing]
    if error.validator in ("oneOf", "anyOf") and instance is None:
        return []  # null means "unset" to the API server; int-or-string schemas both accept it
    return [_locate_issue(manifest, path, _message(error))]


def _unexpected(instance: dict[str, Any], schema: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    return [name for name in instance
            if name not in known and not any(re.search(pattern, str(name)) for pattern in patterns)]


def _message(error: Any) -> str:
    value = _describe(error.instance)
    if error.validator == "type":
        return f"expected {_type_names(error.validator_value)}, got {value}"
    if error.validator in ("oneOf", "anyOf"):
        types = [sub.get("type") for sub in error.validator_value if isinstance(sub, dict)]
        if types and all(types):
            return f"expected {' or '.join(dict.fromkeys(_type_names(t) for t in types))}, got {value}"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(choice) for choice in error.validator_value if choice is not None)
        return f"must be one of {choices}; got {value}"
    return _shorten(error.message)


def _type_names(types: Any) -> str:
    names = [types] if isinstance(types, str) else [name for name in types if name != "null"]
    return " or ".join(names) or "null"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, str):
        return f"string {_shorten(json.dumps(value, ensure_ascii=False), 60)}"
    if isinstance(value, (int, float)):
        return f"{'integer' if isinstance(value, int) else 'number'} {value}"
    return "an array" if isinstance(value, list) else "an object"


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- custom resources -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refusal:
    """Why a custom resource cannot be accepted, and which field to point at."""

    field: str
    message: str


@dataclass
class _CustomKind:
    """One CRD's kind: its versions (served or not) and their schemas."""

    crd: str
    manifest: ManifestLike | None
    versions: dict[str, tuple[bool, Mapping[str, Any] | None]] = field(default_factory=dict)


class _CustomKinds:
    """CRDs of one validation run and the validators built from them (once per kind and version)."""

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, str], _CustomKind] = {}
        self.validators: dict[tuple[str, str, str], Validator | _Refusal | None] = {}

    def add(self, body: Mapping[str, Any], manifest: ManifestLike | None) -> None:
        if body.get("apiVersion") != _CRD_API_VERSION or body.get("kind") != "CustomResourceDefinition":
            return
        spec = body.get("spec")
        names = spec.get("names") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(names, dict):
            return
        group, kind = spec.get("group"), names.get("kind")
        if not isinstance(group, str) or not isinstance(kind, str):
            return
        metadata = body.get("metadata")
        name = str(metadata.get("name")) if isinstance(metadata, dict) else f"{kind}.{group}"
        entry = self.kinds.setdefault((group, kind), _CustomKind(name, manifest))
        for version in spec.get("versions") or []:
            if isinstance(version, dict) and isinstance(version.get("name"), str):
                schema = version.get("schema")
                open_api = schema.get("openAPIV3Schema") if isinstance(schema, dict) else None
                entry.versions[version["name"]] = (version.get("served") is not False,
                                                   open_api if isinstance(open_api, dict) else None)

    def validator(self, api_version: str, kind: str) -> Validator | _Refusal | None:
        """A validator, None (served without a schema), or why the kind is unknown."""
        group, _, version = api_version.rpartition("/")
        key = (group, kind, version)
        if key not in self.validators:
            self.validators[key] = self._build(group, kind, version, api_version)
        return self.validators[key]

    def _build(self, group: str, kind: str, version: str, api_version: str) -> Validator | _Refusal | None:
        custom = self.kinds.get((group, kind))
        if custom is None:
            return _Refusal("kind", f"unknown kind {kind} in {api_version} (no schema for Kubernetes "
                                    f"{KUBERNETES_VERSION} and no CustomResourceDefinition in this set)")
        served, schema = custom.versions.get(version, (False, None))
        if not served:
            return _Refusal("apiVersion", f"version {version} of {kind} is not served by "
                                          f"CustomResourceDefinition {custom.crd}")
        if schema is None:
            return None
        converted = _root_schema(schema)
        try:
            jsonschema.Draft202012Validator.check_schema(converted)
        except jsonschema.SchemaError as error:
            return _Refusal("apiVersion", f"the schema of CustomResourceDefinition {custom.crd} ({version}) "
                                          f"is invalid: {_shorten(error.message)}")
        return jsonschema.Draft202012Validator(converted, registry=_registry())


def _root_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An `openAPIV3Schema` as JSON Schema 2020-12; apiVersion, kind and metadata are implied at the
    root, as the API server does, and metadata is checked as ObjectMeta."""
    converted = _structural(schema, strict=True)
    properties = converted.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    written = properties.get("metadata")
    meta = {"$ref": _OBJECT_META}
    properties["metadata"] = {"allOf": [meta, written]} if written else meta
    return converted


_COPIED = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
           "uniqueItems", "multipleOf", "minProperties", "maxProperties", "required", "format")


def _structural(node: Any, *, strict: bool) -> dict[str, Any]:
    """Translate one schema node. `strict` is False inside allOf/anyOf/oneOf/not, where Kubernetes
    allows only value checks and no pruning decisions."""
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    _exclusive_bounds(node, out)
    _special_types(node, out)
    recurse: Callable[[Any], dict[str, Any]] = functools.partial(_structural, strict=strict)
    if isinstance(node.get("properties"), dict):
        out["properties"] = {name: recurse(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = recurse(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = recurse(extra)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif strict and node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields") \
            and not node.get("x-kubernetes-embedded-resource"):
        out["additionalProperties"] = False  # the API server prunes these; strict mode rejects them
    for junctor in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(junctor), list):
            out[junctor] = [_structural(sub, strict=False) for sub in node[junctor]]
    if isinstance(node.get("not"), dict):
        out["not"] = _structural(node["not"], strict=False)
    return out


def _exclusive_bounds(node: Mapping[str, Any], out: dict[str, Any]) -> None:
    """OpenAPI v3 (draft 4) writes `exclusiveMinimum: true` beside `minimum`; 2020-12 a number."""
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(flag) is True and bound in node:
            out[flag] = out.pop(bound)


def _special_types(node: Mapping[str, Any], out: dict[str, Any]) -> None:
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "format" in out and not isinstance(out["format"], str):
        del out["format"]
