"""The emulator's table of resource types: built-ins from the 1.37 schemas, plus CRDs as they come and go.

Built-in kinds come from the `x-kubernetes-group-version-kind` of the `kubernetes-validate` 1.37
definitions, limited to GA versions (new beta APIs are off by default on a real 1.37 server) and
to kinds a real server stores. Scope, short names, categories and subresources that the schemas do
not carry come from explicit tables below, as `kubectl api-resources` shows them on a 1.37 cluster.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import kubernetes_validate

SCHEMA_VERSION = "1.37.0"

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")

# Kinds that exist in the schemas but are not stored resources (subresource bodies, reviews, requests).
NOT_STORED = frozenset({
    "Scale", "Binding", "Eviction", "EvictionRequest", "TokenRequest", "TokenReview", "SelfSubjectReview",
    "SubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview", "LocalSubjectAccessReview",
    "ComponentStatus", "StorageVersion", "PodCertificateRequest",
})

CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "APIService", "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "VolumeAttributesClass",
    "PriorityClass", "IngressClass", "RuntimeClass", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "CertificateSigningRequest",
    "ClusterTrustBundle", "FlowSchema", "PriorityLevelConfiguration", "IPAddress", "ServiceCIDR",
    "DeviceClass", "DeviceTaintRule", "ResourceSlice", "StorageVersionMigration",
})

SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "pods": ("po",), "services": ("svc",), "deployments": ("deploy",), "replicasets": ("rs",),
    "statefulsets": ("sts",), "daemonsets": ("ds",), "configmaps": ("cm",), "namespaces": ("ns",),
    "nodes": ("no",), "persistentvolumeclaims": ("pvc",), "persistentvolumes": ("pv",),
    "serviceaccounts": ("sa",), "endpoints": ("ep",), "events": ("ev",), "ingresses": ("ing",),
    "cronjobs": ("cj",), "horizontalpodautoscalers": ("hpa",), "poddisruptionbudgets": ("pdb",),
    "networkpolicies": ("netpol",), "storageclasses": ("sc",), "customresourcedefinitions": ("crd", "crds"),
    "replicationcontrollers": ("rc",), "limitranges": ("limits",), "resourcequotas": ("quota",),
    "priorityclasses": ("pc",), "certificatesigningrequests": ("csr",),
}

CATEGORY_ALL = frozenset({
    "pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
    "replicationcontrollers", "horizontalpodautoscalers",
})

# Kinds whose status is written through a `/status` subresource on a 1.37 server.
STATUS_SUBRESOURCE = frozenset({
    "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Service", "Namespace",
    "Node", "PersistentVolume", "PersistentVolumeClaim", "ReplicationController", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "Ingress", "CustomResourceDefinition", "APIService", "CertificateSigningRequest",
    "ResourceQuota", "FlowSchema", "PriorityLevelConfiguration", "ResourceClaim", "ServiceCIDR",
    "StorageVersionMigration", "ValidatingAdmissionPolicy", "VolumeAttachment", "IPAddress",
})
SCALE_SUBRESOURCE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})

# Kinds whose strategy sets and bumps metadata.generation (plus every custom resource).
GENERATION_KINDS = frozenset({
    "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "ReplicationController",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "NetworkPolicy", "CustomResourceDefinition",
    "ValidatingAdmissionPolicy", "MutatingAdmissionPolicy", "FlowSchema", "PriorityLevelConfiguration",
    "ResourceClaim", "DeviceClass", "ResourceSlice",
})

IRREGULAR_PLURALS = {"Endpoints": "endpoints"}


def plural_of(kind: str) -> str:
    """The resource name the Kubernetes code generators give a kind (gengo's plural namer)."""
    if kind in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[kind]
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


@dataclass(frozen=True)
class ResourceType:
    """One served resource of one group/version, as discovery lists it."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    custom: bool = False
    tracks_generation: bool = False
    scale_paths: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`deployments.apps`, or `pods` for the core group: how error messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """`Deployment.apps`, or `Pod`: how Invalid errors name a kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def schema_dir() -> Path:
    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{SCHEMA_VERSION}-local"


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    """The `$defs` of the 1.37 schemas (parsed once per process)."""
    with (schema_dir() / "_definitions.json").open() as handle:
        data: dict[str, Any] = json.load(handle)
    defs: dict[str, Any] = data["$defs"]
    return defs


_STABLE = re.compile(r"^v\d+$")


@lru_cache(maxsize=1)
def builtin_types() -> tuple[ResourceType, ...]:
    """Every GA built-in stored kind of the 1.37 schemas."""
    found: dict[tuple[str, str, str], ResourceType] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            if name.startswith("io.k8s.apimachinery") or kind.endswith("List") or kind in NOT_STORED:
                continue
            if not _STABLE.match(version):
                continue
            props = schema.get("properties", {})
            if "metadata" not in props:
                continue
            plural = plural_of(kind)
            subresources: list[str] = []
            if kind in STATUS_SUBRESOURCE:
                subresources.append("status")
            if kind in SCALE_SUBRESOURCE:
                subresources.append("scale")
            found[(group, version, kind)] = ResourceType(
                group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
                namespaced=kind not in CLUSTER_SCOPED, short_names=SHORT_NAMES.get(plural, ()),
                categories=("all",) if plural in CATEGORY_ALL and group in ("", "apps", "batch", "autoscaling")
                else (),
                subresources=tuple(subresources), tracks_generation=kind in GENERATION_KINDS,
            )
    # autoscaling/v1 and v2 both serve HorizontalPodAutoscaler; "all" lists it once, from v2.
    return tuple(sorted(found.values(), key=lambda t: (t.group, t.version, t.plural)))


@lru_cache(maxsize=1)
def _schemas_by_gvk() -> dict[tuple[str, str, str], dict[str, Any]]:
    index: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, schema in definitions().items():
        if name.startswith("io.k8s.apimachinery"):
            continue
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            index[(gvk["group"], gvk["version"], gvk["kind"])] = schema
    return index


def schema_for(group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The 1.37 schema of a built-in kind."""
    return _schemas_by_gvk().get((group, version, kind))


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CustomResourceDefinition as resource types."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served", False):
            continue
        subs = version.get("subresources") or {}
        subresources = tuple(s for s in ("status", "scale") if s in subs)
        scale = subs.get("scale") or {}
        result.append(ResourceType(
            group=spec.get("group", ""), version=version.get("name", ""), kind=names.get("kind", ""),
            plural=names.get("plural", ""), singular=names.get("singular") or names.get("kind", "").lower(),
            namespaced=spec.get("scope") == "Namespaced", short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()), subresources=subresources, custom=True,
            tracks_generation=True,
            scale_paths={k: v for k, v in scale.items() if isinstance(v, str)},
        ))
    return result


class TypeRegistry:
    """The resource types served now: the built-ins plus those of established CRDs."""

    def __init__(self) -> None:
        self._builtin: list[ResourceType] = list(builtin_types())
        self._custom: dict[str, list[ResourceType]] = {}  # CRD name -> its served versions

    def all(self) -> list[ResourceType]:
        out = list(self._builtin)
        for types in self._custom.values():
            out.extend(types)
        return out

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self._custom[crd_name] = types

    def remove_crd(self, crd_name: str) -> None:
        self._custom.pop(crd_name, None)

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rtype in self.all():
            if rtype.group == group and rtype.version == version and rtype.plural == plural:
                return rtype
        return None

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rtype in self.all():
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred (first) first; the core group is ''."""
        out: dict[str, list[str]] = {}
        for rtype in self.all():
            versions = out.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        for versions in out.values():
            versions.sort(key=_version_priority)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.all() if t.group == group and t.version == version]


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    match = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not match:
        return (3, 0, 0)
    major = int(match.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[match.group(2) or ""]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor)
