"""Connecting from a kubeconfig, and retrying only what a retry can fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from providers.kubernetes.client import KubeClient, KubeError, PermissionDenied, RetryPolicy
from sandbox.kube import KubeSandbox

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}


def test_connect_from_kubeconfig_content_applies_and_reads(kubeconfig: Path) -> None:
    client = KubeClient.connect(content=kubeconfig.read_text())
    applied = client.apply(CM)
    assert applied["metadata"]["managedFields"][0]["manager"] == "tidegate"
    assert client.get("v1", "ConfigMap", "c", "default")["data"] == {"k": "v"}  # type: ignore[index]
    assert client.get("v1", "ConfigMap", "missing", "default") is None
    assert client.namespaced("v1", "ConfigMap") and not client.namespaced("v1", "Namespace")


def test_500s_and_429s_are_retried_honouring_retry_after(kube: KubeSandbox, client: KubeClient) -> None:
    client.resource("v1", "ConfigMap")
    kube.inject(status=500, verb="patch", times=2)
    kube.inject(status=429, retry_after=3, verb="get", times=1)
    client.apply(CM)
    assert client.get("v1", "ConfigMap", "c", "default") is not None
    sleeps = client.sleeps  # type: ignore[attr-defined]
    assert len(sleeps) == 3 and 3.0 in sleeps


def test_validation_errors_are_not_retried(kube: KubeSandbox, client: KubeClient) -> None:
    bad = {**CM, "data": {"k": 3}}
    with pytest.raises(KubeError) as caught:
        client.apply(bad)
    assert 400 <= caught.value.status < 500
    assert client.sleeps == []  # type: ignore[attr-defined]
    assert len(kube.requests(verb="patch")) == 1


def test_permanent_403_fails_clearly(kube: KubeSandbox, client: KubeClient) -> None:
    client.resource("v1", "ConfigMap")
    kube.inject(status=403, verb="patch")
    with pytest.raises(PermissionDenied, match="permission denied"):
        client.apply(CM)
    assert client.sleeps == []  # type: ignore[attr-defined]


def test_gives_up_after_the_retry_budget(kube: KubeSandbox, kubeconfig: Path) -> None:
    client = KubeClient.connect(path=kubeconfig, retry=RetryPolicy(attempts=3, sleep=lambda _: None))
    client.resource("v1", "ConfigMap")
    kube.inject(status=503, verb="patch")
    with pytest.raises(KubeError) as caught:
        client.apply(CM)
    assert caught.value.status == 503
    assert len(kube.requests(verb="patch")) == 3


def test_a_timed_out_request_is_retried(kube: KubeSandbox, kubeconfig: Path) -> None:
    sleeps: list[float] = []
    client = KubeClient.connect(path=kubeconfig, retry=RetryPolicy(sleep=sleeps.append), timeout=0.2)
    client.apply(CM)
    kube.inject(latency=0.5, verb="get", resource="configmaps", times=1)
    assert client.get("v1", "ConfigMap", "c", "default") is not None
    assert len(sleeps) == 1
    time.sleep(0.4)  # let the abandoned slow request finish before the emulator stops
