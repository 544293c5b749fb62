"""Kind order for an apply, object addresses, and namespace injection decided by API discovery.

Order (Flux and Argo CD agree): CustomResourceDefinitions, Namespaces, cluster-scoped RBAC and other
cluster definitions, "class" objects, ServiceAccounts and RBAC, ConfigMaps and Secrets, Services,
workloads, then everything else (custom resources included). Prune walks the reverse order.

Bodies are copied, never mutated: a rendered manifest is shared with validation, previews and the
cache.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_TIERS: tuple[frozenset[str], ...] = (
    frozenset({"CustomResourceDefinition"}),
    frozenset({"Namespace"}),
    frozenset({
        "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "PodSecurityPolicy",
    }),
    frozenset({
        "StorageClass", "IngressClass", "PriorityClass", "RuntimeClass", "VolumeSnapshotClass",
        "GatewayClass", "DeviceClass",
    }),
    frozenset({"ResourceQuota", "LimitRange", "PersistentVolume", "ServiceAccount", "Role", "RoleBinding",
               "NetworkPolicy", "PodDisruptionBudget"}),
    frozenset({"ConfigMap", "Secret"}),
    frozenset({"PersistentVolumeClaim"}),
    frozenset({"Service", "Endpoints", "EndpointSlice"}),
    frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Pod",
               "Job", "CronJob", "HorizontalPodAutoscaler"}),
    frozenset({"Ingress"}),
)
_OTHER = len(_TIERS)


def kind_rank(kind: str) -> int:
    """Lower applies first; kinds not listed (custom resources too) come last."""
    for index, kinds in enumerate(_TIERS):
        if kind in kinds:
            return index
    return _OTHER


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def version_of(api_version: str) -> str:
    return api_version.rpartition("/")[2]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object: group, kind, namespace ("" when cluster-scoped), name, and the applied version."""

    group: str
    kind: str
    namespace: str
    name: str
    version: str = ""

    @property
    def address(self) -> str:
        """`group/kind/namespace/name`, DESIGN.md's Change address (core group and cluster scope as "")."""
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity without the version (an object keeps its identity across served versions)."""
        return (self.group, self.kind, self.namespace, self.name)

    def to_dict(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace, "name": self.name,
                "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectRef:
        return cls(str(data.get("group", "")), str(data.get("kind", "")), str(data.get("namespace", "")),
                   str(data.get("name", "")), str(data.get("version", "")))


def ref_of(body: Mapping[str, Any]) -> ObjectRef:
    api_version = str(body.get("apiVersion", ""))
    metadata = body.get("metadata") or {}
    return ObjectRef(group_of(api_version), str(body.get("kind", "")), str(metadata.get("namespace") or ""),
                     str(metadata.get("name", "")), version_of(api_version))


T = TypeVar("T")


def sort_for_apply(items: Iterable[T], body: Callable[[T], Mapping[str, Any]]) -> list[T]:
    """Stable sort by kind tier; within a tier, as given (source order)."""
    return sorted(items, key=lambda item: kind_rank(str(body(item).get("kind", ""))))


def sort_for_prune(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Reverse apply order: workloads before the ConfigMaps they read, Namespaces and CRDs last."""
    return sorted(refs, key=lambda ref: (-kind_rank(ref.kind), ref.key))


def with_namespace(body: Mapping[str, Any], namespace: str | None, namespaced: bool) -> dict[str, Any]:
    """A deep copy of `body` with the namespace set as discovery says the kind needs.

    Namespaced kinds lacking one get `namespace` (the workload's default); cluster-scoped kinds lose
    any namespace a manifest carried (the API server ignores it; identity must not include it).
    """
    copied = copy.deepcopy(dict(body))
    metadata = dict(copied.get("metadata") or {})
    if namespaced:
        if not metadata.get("namespace") and namespace:
            metadata["namespace"] = namespace
    else:
        metadata.pop("namespace", None)
    copied["metadata"] = metadata
    return copied


def crd_kinds(bodies: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(group, kind) → the CRD body, for CRDs in the set (their CRs need them Established first)."""
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for body in bodies:
        if body.get("kind") == "CustomResourceDefinition":
            spec = body.get("spec") or {}
            names = spec.get("names") or {}
            out[(str(spec.get("group", "")), str(names.get("kind", "")))] = body
    return out


def crd_scope_namespaced(crd: Mapping[str, Any]) -> bool:
    return str((crd.get("spec") or {}).get("scope", "Namespaced")) == "Namespaced"
