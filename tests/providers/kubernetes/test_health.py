"""kstatus rules as a table, mapped to DESIGN.md's health words; one rollout failing on the emulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes.client import KubeClient
from providers.kubernetes.health import Health, aggregate, health_of, wait
from sandbox.kube import KubeSandbox


def obj(api_version: str, kind: str, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
        generation: int | None = 1, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "namespace": "default", **metadata}
    if generation is not None:
        meta["generation"] = generation
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": meta}
    if spec is not None:
        body["spec"] = spec
    if status is not None:
        body["status"] = status
    return body


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


DEPLOY_OK = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}

CASES = [
    ("missing", None, Health.MISSING),
    ("terminating", obj("v1", "ConfigMap", deletionTimestamp="2026-01-01T00:00:00Z"), Health.PROGRESSING),
    ("generation-not-observed", obj("apps/v1", "Deployment", {"replicas": 2}, {**DEPLOY_OK, "observedGeneration": 0},
                                    generation=2), Health.PROGRESSING),
    ("reconciling", obj("example.com/v1", "Widget", {}, {"conditions": [cond("Reconciling", "True")]}),
     Health.PROGRESSING),
    ("stalled", obj("example.com/v1", "Widget", {}, {"conditions": [cond("Stalled", "True", "Broken")]}),
     Health.DEGRADED),
    ("deployment-available", obj("apps/v1", "Deployment", {"replicas": 2}, DEPLOY_OK), Health.HEALTHY),
    ("deployment-rolling", obj("apps/v1", "Deployment", {"replicas": 2}, {**DEPLOY_OK, "updatedReplicas": 1}),
     Health.PROGRESSING),
    ("deployment-extra-old-pods", obj("apps/v1", "Deployment", {"replicas": 2}, {**DEPLOY_OK, "replicas": 3}),
     Health.PROGRESSING),
    ("deployment-deadline", obj("apps/v1", "Deployment", {"replicas": 2}, {
        **DEPLOY_OK, "conditions": [cond("Progressing", "False", "ProgressDeadlineExceeded")]}), Health.DEGRADED),
    ("deployment-paused", obj("apps/v1", "Deployment", {"replicas": 2, "paused": True}, DEPLOY_OK),
     Health.SUSPENDED),
    ("statefulset-ready", obj("apps/v1", "StatefulSet", {"replicas": 1}, {
        "observedGeneration": 1, "readyReplicas": 1, "currentReplicas": 1, "availableReplicas": 1}), Health.HEALTHY),
    ("statefulset-starting", obj("apps/v1", "StatefulSet", {"replicas": 2}, {
        "observedGeneration": 1, "readyReplicas": 1, "currentReplicas": 2, "availableReplicas": 1}),
     Health.PROGRESSING),
    ("daemonset-ready", obj("apps/v1", "DaemonSet", {}, {
        "observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
        "updatedNumberScheduled": 2, "numberAvailable": 2, "numberReady": 2}), Health.HEALTHY),
    ("daemonset-rolling", obj("apps/v1", "DaemonSet", {}, {
        "observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
        "updatedNumberScheduled": 1, "numberAvailable": 2, "numberReady": 2}), Health.PROGRESSING),
    ("job-complete", obj("batch/v1", "Job", {}, {"conditions": [cond("Complete", "True")]}), Health.HEALTHY),
    ("job-failed", obj("batch/v1", "Job", {}, {"conditions": [cond("Failed", "True", "BackoffLimitExceeded")]}),
     Health.DEGRADED),
    ("job-running", obj("batch/v1", "Job", {}, {"active": 1}), Health.PROGRESSING),
    ("cronjob-suspended", obj("batch/v1", "CronJob", {"suspend": True}), Health.SUSPENDED),
    ("pod-ready", obj("v1", "Pod", {}, {"phase": "Running", "conditions": [cond("Ready", "True")]}), Health.HEALTHY),
    ("pod-succeeded", obj("v1", "Pod", {}, {"phase": "Succeeded"}), Health.HEALTHY),
    ("pod-crashloop", obj("v1", "Pod", {}, {"phase": "Running", "containerStatuses": [
        {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}), Health.DEGRADED),
    ("pod-pending", obj("v1", "Pod", {}, {"phase": "Pending"}), Health.PROGRESSING),
    ("pvc-bound", obj("v1", "PersistentVolumeClaim", {}, {"phase": "Bound"}), Health.HEALTHY),
    ("pvc-pending", obj("v1", "PersistentVolumeClaim", {}, {"phase": "Pending"}), Health.PROGRESSING),
    ("service-cluster-ip", obj("v1", "Service", {"type": "ClusterIP"}, {}), Health.HEALTHY),
    ("service-lb-pending", obj("v1", "Service", {"type": "LoadBalancer"}, {"loadBalancer": {}}), Health.PROGRESSING),
    ("service-lb-ready", obj("v1", "Service", {"type": "LoadBalancer"},
                             {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}), Health.HEALTHY),
    ("crd-established", obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", {},
                            {"conditions": [cond("Established", "True")]}), Health.HEALTHY),
    ("crd-not-established", obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", {}, {}), Health.PROGRESSING),
    ("ready-true", obj("example.com/v1", "Widget", {}, {"conditions": [cond("Ready", "True")]}), Health.HEALTHY),
    ("ready-false", obj("example.com/v1", "Widget", {}, {"conditions": [cond("Ready", "False", "Waiting")]}),
     Health.PROGRESSING),
    ("configmap", obj("v1", "ConfigMap"), Health.HEALTHY),
]


@pytest.mark.parametrize(("body", "expected"), [pytest.param(b, e, id=i) for i, b, e in CASES])
def test_kstatus_rules(body: dict[str, Any] | None, expected: Health) -> None:
    assert health_of(body)[0] is expected


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param([Health.HEALTHY, Health.DEGRADED, Health.PROGRESSING], Health.DEGRADED, id="degraded-wins"),
    pytest.param([Health.HEALTHY, Health.UNKNOWN, Health.PROGRESSING], Health.UNKNOWN, id="unknown-over-progressing"),
    pytest.param([Health.HEALTHY, Health.PROGRESSING], Health.PROGRESSING, id="progressing"),
    pytest.param([Health.HEALTHY, Health.SUSPENDED], Health.SUSPENDED, id="suspended"),
    pytest.param([Health.HEALTHY, Health.HEALTHY], Health.HEALTHY, id="all-healthy"),
])
def test_aggregate(values: list[Health], expected: Health) -> None:
    assert aggregate(values) is expected


def _deployment(name: str, fail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]}}},
    }
    if fail:
        body["metadata"]["annotations"] = {"sandbox.tidegate.dev/fail": "true"}
    return body


def test_failing_rollout_is_degraded_with_its_reason_and_wait_stops_early(kube: KubeSandbox, kubeconfig: Path) -> None:
    client = KubeClient.connect(path=kubeconfig)
    good, bad = _deployment("good"), _deployment("bad", fail=True)
    client.apply(good)
    client.apply(bad)
    started = time.monotonic()
    report = wait(client, [("web", good), ("worker", bad)], timeout=20, interval=0.02)
    assert time.monotonic() - started < 10
    assert report.environment is Health.DEGRADED and not report.timed_out
    assert report.workloads["worker"] is Health.DEGRADED
    problem = next(o for o in report.objects if o.workload == "worker")
    assert "ProgressDeadlineExceeded" in problem.reason
    healthy = wait(client, [("web", good)], timeout=20, interval=0.02)
    assert healthy.environment is Health.HEALTHY


def test_a_health_wait_stops_when_told_a_newer_revision_waits_and_says_why(tmp_path: Path) -> None:
    with KubeSandbox(controller_delay=None) as quiet:  # no controllers: the rollout never finishes
        kubeconfig = quiet.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient.connect(path=kubeconfig)
        client.apply(_deployment("web"))
        asked: list[float] = []

        def stop() -> str | None:
            asked.append(time.monotonic())
            return "sync #7 of abc is ready to plan" if len(asked) >= 3 else None

        started = time.monotonic()
        report = wait(client, [("web", _deployment("web"))], timeout=60, interval=0.02, stop=stop)
        client.close()
    assert time.monotonic() - started < 10
    assert report.cancelled == "sync #7 of abc is ready to plan" and not report.timed_out
    assert report.environment is Health.PROGRESSING and len(asked) == 3
