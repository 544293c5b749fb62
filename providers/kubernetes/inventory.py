"""The inventory: the exact set of objects a sync applied, per environment and workload.

Kept in two places: returned in `StageResult.outputs["inventory"]` for the reconciler to store, and
in the cluster as one labelled ConfigMap per environment and workload in `tidegate-system`, so a
fresh Tidegate (or one whose store was lost) recovers it. Prune is by inventory only — never by a
label query, which could match objects we do not own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from providers.kubernetes.client import KubeClient
from providers.kubernetes.diff import compare_bodies
from providers.kubernetes.labels import ENVIRONMENT_LABEL, MANAGED_BY, WORKLOAD_LABEL, label_value
from providers.kubernetes.ordering import ObjectRef
from providers.stage import Action

NAMESPACE = "tidegate-system"
INVENTORY_LABEL = "tidegate.dev/inventory"
KEY = "inventory.json"

Inventory = dict[str, list[ObjectRef]]
"""workload name → the objects applied for it."""


def configmap_name(environment: str, workload: str) -> str:
    return f"inventory-{label_value(environment)}-{label_value(workload)}"[:253]


def to_json(inventory: Mapping[str, Iterable[ObjectRef]]) -> dict[str, list[dict[str, str]]]:
    return {workload: [ref.to_dict() for ref in sorted(refs)] for workload, refs in sorted(inventory.items())}


def from_json(data: Mapping[str, Any] | None) -> Inventory:
    out: Inventory = {}
    for workload, refs in dict(data or {}).items():
        if isinstance(refs, list):
            out[str(workload)] = [ObjectRef.from_dict(item) for item in refs if isinstance(item, Mapping)]
    return out


def _body(environment: str, workload: str, refs: Iterable[ObjectRef]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(environment, workload), "namespace": NAMESPACE,
            "labels": {MANAGED_BY: "tidegate", INVENTORY_LABEL: "true",
                       ENVIRONMENT_LABEL: label_value(environment), WORKLOAD_LABEL: label_value(workload)},
            "annotations": {"tidegate.dev/environment-name": environment, "tidegate.dev/workload-name": workload},
        },
        "data": {KEY: json.dumps([ref.to_dict() for ref in sorted(refs)], sort_keys=True)},
    }


def read(client: KubeClient, environment: str) -> Inventory:
    """The environment's inventory as the cluster keeps it ({} when there is none yet)."""
    items = client.list("v1", "ConfigMap", NAMESPACE,
                        label_selector=f"{INVENTORY_LABEL}=true,{ENVIRONMENT_LABEL}={label_value(environment)}")
    out: Inventory = {}
    for item in items:
        annotations = (item.get("metadata") or {}).get("annotations") or {}
        if annotations.get("tidegate.dev/environment-name", environment) != environment:
            continue
        workload = str(annotations.get("tidegate.dev/workload-name") or (item.get("metadata") or {}).get("name"))
        try:
            refs = json.loads(str((item.get("data") or {}).get(KEY, "[]")))
        except json.JSONDecodeError:
            continue
        out[workload] = [ObjectRef.from_dict(ref) for ref in refs if isinstance(ref, Mapping)]
    return out


def write(client: KubeClient, environment: str, inventory: Mapping[str, Iterable[ObjectRef]],
          previous: Mapping[str, Iterable[ObjectRef]] | None = None) -> int:
    """Store each workload's inventory; drop those of workloads now empty. Returns writes made.

    Unchanged ConfigMaps are not written (a PATCH that changes nothing is still a write).
    """
    writes = 0
    current = {workload: list(refs) for workload, refs in inventory.items()}
    if not any(current.values()):
        live_maps: dict[str, dict[str, Any]] = {}
    else:
        # one LIST answers both whether the namespace exists and what each ConfigMap holds now
        live_maps = {str((item.get("metadata") or {}).get("name")): item
                     for item in client.list("v1", "ConfigMap", NAMESPACE, label_selector=(
                         f"{INVENTORY_LABEL}=true,{ENVIRONMENT_LABEL}={label_value(environment)}"))}
        if not live_maps and client.get("v1", "Namespace", NAMESPACE) is None:
            client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            writes += 1
    for workload, refs in current.items():
        if not refs:
            continue
        body = _body(environment, workload, refs)
        live = live_maps.get(body["metadata"]["name"])
        if live is not None and compare_bodies(ObjectRef("", "ConfigMap", NAMESPACE, body["metadata"]["name"]),
                                               {**body, "metadata": {**live["metadata"], **body["metadata"],
                                                "labels": {**(live["metadata"].get("labels") or {}),
                                                           **body["metadata"]["labels"]},
                                                "annotations": {**(live["metadata"].get("annotations") or {}),
                                                                **body["metadata"]["annotations"]}}},
                                               live).action is Action.no_op:
            continue
        client.apply(body, force=True)
        writes += 1
    for workload in set(previous or {}) - {w for w, refs in current.items() if refs}:
        if client.delete("v1", "ConfigMap", configmap_name(environment, workload), NAMESPACE):
            writes += 1
    return writes
