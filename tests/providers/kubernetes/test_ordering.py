"""Kind order, prune order and namespace injection (copies only)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes.client import KubeClient
from providers.kubernetes.ordering import ObjectRef, sort_for_apply, sort_for_prune, with_namespace
from providers.kubernetes.stage import KubernetesStage
from providers.stage import StageContext
from tests.providers.kubernetes.conftest import workloads_inputs


def body(kind: str, api_version: str = "v1", name: str = "x") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


APPLY_ORDER = ["CustomResourceDefinition", "Namespace", "ClusterRole", "StorageClass", "ServiceAccount",
               "ConfigMap", "Secret", "Service", "Deployment", "Ingress", "Widget"]


def test_kind_order_is_stable_and_prune_reverses_it() -> None:
    shuffled = [body(kind) for kind in reversed(APPLY_ORDER)]
    ordered = [b["kind"] for b in sort_for_apply(shuffled, lambda b: b)]
    assert ordered == ["CustomResourceDefinition", "Namespace", "ClusterRole", "StorageClass", "ServiceAccount",
                       "Secret", "ConfigMap", "Service", "Deployment", "Ingress", "Widget"]  # same tier: as given
    refs = [ObjectRef("", kind, "", "x") for kind in APPLY_ORDER]
    kinds = [r.kind for r in sort_for_prune(refs)]
    assert kinds[0] == "Widget" and kinds[-2:] == ["Namespace", "CustomResourceDefinition"]


@pytest.mark.parametrize(("namespaced", "given", "expected"), [
    pytest.param(True, None, "web", id="namespaced-gets-default"),
    pytest.param(True, "other", "other", id="namespaced-keeps-its-own"),
    pytest.param(False, "web", None, id="cluster-scoped-loses-it"),
])
def test_namespace_injection_copies(namespaced: bool, given: str | None, expected: str | None) -> None:
    original = body("ConfigMap")
    if given:
        original["metadata"]["namespace"] = given
    before = copy.deepcopy(original)
    result = with_namespace(original, "web", namespaced)
    assert result["metadata"].get("namespace") == expected
    assert original == before


def test_discovery_decides_scope_and_rendered_bodies_are_never_mutated(
        example_states: dict[str, Any], kubeconfig: Path, tmp_path: Path) -> None:
    state = example_states["staging"]
    manifests = {name: list(rendered.manifests) for name, rendered in state.workloads.items()}
    before = {name: [copy.deepcopy(m.body) for m in items] for name, items in manifests.items()}
    ctx = StageContext("staging", "rev", tmp_path, tmp_path,
                       spec=workloads_inputs({"workloads": [{"name": n, "namespace": ns}
                                                            for n, ns in state.namespaces.items()]}, manifests),
                       settings={"kubeconfig_path": str(kubeconfig)})
    client = KubeClient.connect(path=kubeconfig)
    prepared = KubernetesStage().prepare(client, ctx)
    scopes = {p.ref.kind: p.ref.namespace for p in prepared}
    assert scopes["Namespace"] == "" and scopes["CustomResourceDefinition"] == ""
    assert scopes["Deployment"] == "web" and scopes["BackupPolicy"] == "web"
    stage = KubernetesStage()
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    assert {name: [m.body for m in items] for name, items in manifests.items()} == before
