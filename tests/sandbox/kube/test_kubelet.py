"""Pod exec, attach, portforward and log answer as the API server does on a cluster where no node can
run the pod: its own errors, after the pod and the container are checked, never a 404 on the path."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str = "p", node: str | None = None, containers: tuple[str, ...] = ("main",),
         init: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c, "image": "busybox"} for c in init]
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _failure(code: int, reason: str, message: str) -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message}
    if reason:
        status["reason"] = reason
    return {**status, "code": code}


@pytest.mark.parametrize(("subresource", "method"), [
    ("exec", "POST"), ("exec", "GET"), ("attach", "POST"), ("portforward", "GET"),
], ids=["exec-post", "exec-get", "attach", "portforward"])
def test_a_pod_no_node_runs_cannot_be_exec_attached_or_forwarded_to(
        api: Any, subresource: str, method: str) -> None:
    api.post(PODS, _pod())
    answer = api.request(method, f"{PODS}/p/{subresource}?command=date&stdout=true&ports=80")
    assert (answer.status_code, answer.json()) == (400, _failure(400, "BadRequest",
                                                                 "pod p does not have a host assigned"))


def test_the_official_clients_streams_get_the_api_servers_refusal(k8s: ApiClient, api: Any) -> None:
    api.post(PODS, _pod())
    core = client.CoreV1Api(k8s)
    with pytest.raises(ApiException) as refused:
        stream(core.connect_get_namespaced_pod_exec, "p", "default", command=["date"], stdout=True,
               stderr=False, stdin=False, tty=False)
    assert "400 Bad Request" in str(refused.value.reason)
    assert "pod p does not have a host assigned" in str(refused.value.reason)
    with pytest.raises(ApiException) as forward:
        portforward(core.connect_get_namespaced_pod_portforward, "p", "default", ports="80")
    assert "pod p does not have a host assigned" in str(forward.value.reason)


def test_kubectl_exec_prints_the_api_servers_error(kubectl: Any, api: Any) -> None:
    api.post(PODS, _pod())
    result = kubectl("exec", "p", "--", "date")
    assert result.returncode == 1
    assert "pod p does not have a host assigned" in result.stderr, result.stderr


def test_the_log_of_a_pod_no_node_runs_is_empty(k8s: ApiClient, api: Any) -> None:
    """No location to stream from: the log handler answers 204 No Content."""
    api.post(PODS, _pod())
    assert api.get(f"{PODS}/p/log").status_code == 204
    assert client.CoreV1Api(k8s).read_namespaced_pod_log("p", "default") is None  # no body to parse


@pytest.mark.parametrize(("pod", "query", "code", "reason", "message"), [
    (_pod(containers=("main", "side"), init=("setup",)), "", 400, "BadRequest",
     "a container name must be specified for pod p, choose one of: [setup main side]"),
    (_pod(), "&container=nope", 400, "BadRequest", "container nope is not valid for pod p"),
    (None, "", 404, "NotFound", 'pods "p" not found'),
], ids=["container-needed", "unknown-container", "no-pod"])
def test_the_pod_and_its_container_are_checked_first(
        api: Any, pod: dict[str, Any] | None, query: str, code: int, reason: str, message: str) -> None:
    if pod is not None:
        api.post(PODS, pod)
    answer = api.post(f"{PODS}/p/exec?command=date&stdout=true{query}", None)
    assert (answer.status_code, answer.json()["reason"], answer.json()["message"]) == (code, reason, message)


def test_a_pod_bound_by_hand_answers_as_a_kubelet_that_cannot_be_reached(api: Any) -> None:
    api.post(PODS, _pod("on-ghost", node="ghost"))
    missing = api.post(f"{PODS}/on-ghost/exec?command=date&stdout=true", None)
    assert (missing.status_code, missing.json()) == (404, {**_failure(404, "NotFound", 'nodes "ghost" not found'),
                                                           "details": {"name": "ghost", "kind": "nodes"}})
    api.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    api.patch("/api/v1/nodes/n1/status", {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}})
    api.post(PODS, _pod("on-n1", node="n1"))
    refused = api.post(f"{PODS}/on-n1/attach?stdout=true", None)
    assert (refused.status_code, refused.json()) == (500, _failure(
        500, "", "error dialing backend: dial tcp 10.0.0.9:10250: connect: connection refused"))


def test_other_methods_are_not_allowed_on_a_connect_subresource(api: Any) -> None:
    api.post(PODS, _pod())
    assert api.put(f"{PODS}/p/exec", {}).status_code == 405
    assert api.post(f"{PODS}/p/log", {}).status_code == 405


def test_discovery_lists_the_pods_connect_subresources(api: Any) -> None:
    listed = {r["name"]: (r["kind"], r["verbs"]) for r in api.get("/api/v1").json()["resources"]}
    assert listed["pods/exec"] == ("PodExecOptions", ["create", "get"])
    assert listed["pods/attach"] == ("PodAttachOptions", ["create", "get"])
    assert listed["pods/portforward"] == ("PodPortForwardOptions", ["create", "get"])
    assert listed["pods/log"] == ("Pod", ["get"])
