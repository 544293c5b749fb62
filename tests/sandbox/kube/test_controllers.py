"""Simulated controllers: workloads report a healthy status after a delay, or fail when annotated to."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.kube import KubeSandbox

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
def cluster() -> Iterator[KubeSandbox]:
    with KubeSandbox(controller_delay=0.05) as sandbox:
        yield sandbox


@pytest.fixture
def api(cluster: KubeSandbox, client_for: Any) -> Any:
    return client_for(cluster)


def wait_for(api: Any, path: str, check: Any, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj: dict[str, Any] = api.get(path).json()
        if check(obj):
            return obj
        assert time.monotonic() < deadline, json.dumps(obj.get("status"))
        time.sleep(0.02)


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj.get("status", {}).get("conditions", [])}


def test_a_deployment_becomes_available_after_the_delay_with_observed_generation_lag(api: Any, m: Any) -> None:
    created = api.post(DEPLOYMENTS, m.deployment(replicas=2)).json()
    assert created["status"] == {}
    ready = wait_for(api, f"{DEPLOYMENTS}/web", lambda o: o["status"].get("observedGeneration") == 1)
    assert ready["status"]["availableReplicas"] == 2 and ready["status"]["updatedReplicas"] == 2
    assert conditions(ready) == {"Available": ("True", "MinimumReplicasAvailable"),
                                 "Progressing": ("True", "NewReplicaSetAvailable")}
    scaled = api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}}).json()
    assert scaled["metadata"]["generation"] == 2 and scaled["status"]["observedGeneration"] == 1
    wait_for(api, f"{DEPLOYMENTS}/web", lambda o: o["status"].get("observedGeneration") == 2
             and o["status"].get("readyReplicas") == 3)
    manager = [e["manager"] for e in api.get(f"{DEPLOYMENTS}/web").json()["metadata"]["managedFields"]
               if e.get("subresource") == "status"]
    assert manager == ["sandbox-controller"]


def test_an_annotated_deployment_fails_with_progress_deadline_exceeded(api: Any, m: Any) -> None:
    body = m.deployment()
    body["metadata"]["annotations"] = {"sandbox.tidegate.dev/fail": "true"}
    api.post(DEPLOYMENTS, body)
    failed = wait_for(api, f"{DEPLOYMENTS}/web", lambda o: "conditions" in o["status"])
    assert conditions(failed)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert "readyReplicas" not in failed["status"]


@pytest.mark.parametrize(("path", "body", "check"), [
    ("/apis/batch/v1/namespaces/default/jobs",
     {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": {"template": {"spec": {
         "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}},
     lambda o: ("Complete", "True") in [(c["type"], c["status"]) for c in o["status"].get("conditions", [])]),
    ("/api/v1/namespaces/default/pods",
     {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
      "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}},
     lambda o: o["status"]["phase"] == "Running"),
    ("/api/v1/namespaces/default/persistentvolumeclaims",
     {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
     lambda o: o["status"]["phase"] == "Bound"),
    ("/api/v1/namespaces/default/services",
     {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
      "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
     lambda o: o["status"]["loadBalancer"].get("ingress")),
], ids=["job-completes", "pod-runs", "pvc-binds", "load-balancer-gets-an-address"])
def test_other_kinds_reach_their_healthy_status(api: Any, path: str, body: dict[str, Any],
                                                check: Any) -> None:
    assert api.post(path, body).status_code == 201
    wait_for(api, f"{path}/{body['metadata']['name']}", check)


def test_kubectl_waits_for_available_and_rollout_status(cluster: KubeSandbox, api: Any, m: Any, tmp_path: Path,
                                                       kubectl: Any) -> None:
    served = type(kubectl)(cluster.write_kubeconfig(tmp_path / "cluster"), tmp_path / "cluster-cache")
    api.post(DEPLOYMENTS, m.deployment())
    waited = served("wait", "--for=condition=Available", "deployment/web", "--timeout=10s")
    assert waited.returncode == 0, waited.stderr
    rollout = served("rollout", "status", "deployment/web", "--timeout=10s")
    assert rollout.returncode == 0, rollout.stderr
    assert "successfully rolled out" in rollout.stdout


def test_namespaces_get_their_default_service_account_and_root_ca(api: Any, cluster: KubeSandbox) -> None:
    api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    account = wait_for(api, "/api/v1/namespaces/team/serviceaccounts/default", lambda o: o.get("kind"))
    assert account["metadata"]["namespace"] == "team"
    root_ca = api.get("/api/v1/namespaces/team/configmaps/kube-root-ca.crt").json()
    assert cluster.certs is not None
    assert root_ca["data"]["ca.crt"] == cluster.certs.ca_pem.decode()
    service = api.get("/api/v1/namespaces/default/services/kubernetes").json()
    assert service["spec"]["clusterIP"] == "10.96.0.1"
