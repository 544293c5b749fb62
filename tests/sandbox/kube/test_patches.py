"""The three client patch types, strategic merge directives, and no-op writes that change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.kube import KubeSandbox

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SMP = "application/strategic-merge-patch+json"


def containers(api: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api.get(f"{DEPLOYMENTS}/web").json()["spec"]["template"]["spec"]["containers"]
    return result


def test_merge_patch_merges_maps_replaces_lists_and_deletes_with_null(api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("c", {"a": "1", "b": "2"}))
    patched = api.patch(f"{CONFIGMAPS}/c", {"data": {"a": None, "c": "3"}}).json()
    assert patched["data"] == {"b": "2", "c": "3"}
    api.post(DEPLOYMENTS, m.deployment())
    replaced = api.patch(f"{DEPLOYMENTS}/web", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox:1.36"}]}}}}).json()
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


def test_json_patch_applies_operations_and_a_failed_test_is_rejected(api: Any, m: Any) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 3},
           {"op": "add", "path": "/metadata/labels/tier", "value": "front"}]
    patched = api.patch(f"{DEPLOYMENTS}/web", ops, content_type="application/json-patch+json").json()
    assert patched["spec"]["replicas"] == 3 and patched["metadata"]["labels"]["tier"] == "front"
    failed = api.patch(f"{DEPLOYMENTS}/web", [{"op": "test", "path": "/spec/replicas", "value": 5}],
                       content_type="application/json-patch+json")
    assert failed.status_code == 422 and failed.json()["kind"] == "Status"


@pytest.mark.parametrize(("patch", "expected"), [
    ({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
     [("web", "nginx:1.28")]),
    ({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}},
     [("web", "nginx:1.27"), ("sidecar", "busybox:1.36")]),
    ({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "delete"}]}}}}, []),
    ({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "a:1"}, {"$patch": "replace"}]}}}},
     [("only", "a:1")]),
], ids=["merge-by-name", "add-by-name", "delete-directive", "replace-directive"])
def test_strategic_merge_patch_merges_containers_by_name(api: Any, m: Any, patch: dict[str, Any],
                                                         expected: list[tuple[str, str]]) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    answer = api.patch(f"{DEPLOYMENTS}/web", patch, content_type=SMP)
    if not expected:
        assert answer.status_code == 422  # a Deployment needs a container
        return
    assert answer.status_code == 200, answer.text
    assert [(c["name"], c["image"]) for c in containers(api)] == expected


def test_strategic_merge_uses_the_merge_keys_of_ports_env_and_volume_mounts(api: Any, m: Any) -> None:
    body = m.deployment()
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    api.post(DEPLOYMENTS, body)
    api.patch(f"{DEPLOYMENTS}/web", {"spec": {"template": {"spec": {"containers": [{
        "name": "web", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
        "ports": [{"containerPort": 8080}],
        "volumeMounts": [{"mountPath": "/data", "$patch": "delete"}],
    }]}}}}, content_type=SMP)
    live = containers(api)[0]
    assert live["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
    assert [p["containerPort"] for p in live["ports"]] == [80, 8080]
    assert live.get("volumeMounts", []) == []


def test_strategic_merge_is_refused_for_custom_resources(api: Any, m: Any) -> None:
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", m.crd())
    api.post("/apis/example.com/v1/namespaces/default/widgets",
             {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})
    answer = api.patch("/apis/example.com/v1/namespaces/default/widgets/w", {"spec": {"size": 2}}, content_type=SMP)
    assert answer.status_code == 415 and answer.json()["reason"] == "UnsupportedMediaType"
    merged = api.patch("/apis/example.com/v1/namespaces/default/widgets/w", {"spec": {"size": 2}}).json()
    assert merged["spec"] == {"size": 2} and merged["metadata"]["generation"] == 2


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/json-patch+json", SMP, "put"])
def test_a_write_that_changes_nothing_keeps_the_resource_version_and_emits_no_event(
        kube: KubeSandbox, api: Any, m: Any, content_type: str) -> None:
    created = api.post(DEPLOYMENTS, m.deployment()).json()
    rv = created["metadata"]["resourceVersion"]
    if content_type == "put":
        answer = api.put(f"{DEPLOYMENTS}/web", m.deployment())
    elif content_type == "application/json-patch+json":
        answer = api.patch(f"{DEPLOYMENTS}/web", [{"op": "replace", "path": "/spec/replicas", "value": 1}],
                           content_type=content_type)
    else:
        answer = api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 1}}, content_type=content_type)
    assert answer.status_code == 200
    assert answer.json()["metadata"]["resourceVersion"] == rv
    assert api.get(DEPLOYMENTS).json()["metadata"]["resourceVersion"] == rv
    # The first event after rv is the next real change, not the no-op write.
    api.post(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "marker"}})
    api.patch(f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"changed": "yes"}}})
    with api.get(f"{DEPLOYMENTS}?watch=true&resourceVersion={rv}", stream=True) as stream:
        first = json.loads(next(stream.iter_lines()))
    assert first["type"] == "MODIFIED" and first["object"]["metadata"]["labels"]["changed"] == "yes"


def test_scale_subresource_reads_and_writes_replicas(api: Any, m: Any) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    scale = api.get(f"{DEPLOYMENTS}/web/scale").json()
    assert (scale["kind"], scale["apiVersion"], scale["spec"]) == ("Scale", "autoscaling/v1", {"replicas": 1})
    assert scale["status"]["selector"] == "app=web"
    api.patch(f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": 5}})
    assert api.get(f"{DEPLOYMENTS}/web").json()["spec"]["replicas"] == 5
