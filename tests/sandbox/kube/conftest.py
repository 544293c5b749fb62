"""Fixtures for the Kubernetes API emulator: a fresh server per test, an HTTP client, kubectl, manifests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import config
from kubernetes.client import ApiClient

from sandbox.kube import KubeSandbox

ROOT = Path(__file__).resolve().parents[3]
KUBECTL = ROOT / ".venv" / "bin" / "kubectl"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run the real kubectl binary are integration tests, as elsewhere in the suite."""
    for item in items:
        if HERE in Path(str(item.path)).parents and "kubectl" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def kube() -> Iterator[KubeSandbox]:
    """A fresh emulator on a free loopback port (HTTPS with a sandbox CA, bearer token), controllers off.

    Tests of the API server's own semantics must not race the simulated controllers (nor wait for a
    CRD to be Established); the controller tests start their own sandbox with delays.
    """
    with KubeSandbox(bookmark_interval=0.2, controller_delay=None, crd_delay=0) as sandbox:
        yield sandbox


class Api:
    """A thin `requests` client for the emulator: paths are API paths, bodies are JSON."""

    def __init__(self, sandbox: KubeSandbox) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {sandbox.token}"
        self.verify = str(sandbox.ca_file)  # per request: REQUESTS_CA_BUNDLE would override a session's verify

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                **kwargs: Any) -> requests.Response:
        data = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.sandbox.url + path, data=data, headers=headers,
                                    verify=self.verify, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, body, **kwargs)

    def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json",
              **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, body, content_type=content_type, **kwargs)

    def delete(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, body, **kwargs)


@pytest.fixture
def api(kube: KubeSandbox) -> Api:
    return Api(kube)


@pytest.fixture
def client_for() -> type[Api]:
    """The `Api` client class, for tests that start a sandbox of their own."""
    return Api


@pytest.fixture
def kubeconfig(kube: KubeSandbox, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def k8s(kubeconfig: Path) -> Iterator[ApiClient]:
    """The official client configured from the emulator's kubeconfig, as its users configure it."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    yield api_client
    api_client.close()


@dataclass
class Kubectl:
    kubeconfig: Path
    cache: Path

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, tmp_path / "kubectl-cache")


Manifest = dict[str, Any]


def _deployment(name: str = "web", image: str = "nginx:1.27", replicas: int | None = None,
                labels: dict[str, str] | None = None) -> Manifest:
    spec: Manifest = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": name, "image": image, "ports": [{"containerPort": 80}]}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}


def _configmap(name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> Manifest:
    meta: Manifest = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {"k": "v"}}


def _crd() -> Manifest:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


class Manifests:
    """Builders for the manifests the tests use (fresh dicts on every call)."""

    deployment = staticmethod(_deployment)
    configmap = staticmethod(_configmap)
    crd = staticmethod(_crd)


@pytest.fixture
def m() -> type[Manifests]:
    return Manifests
