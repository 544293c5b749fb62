"""Discovery as kubectl and client-go read it: version, group lists, resource lists, aggregated v2, CRDs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kube import KubeSandbox


def resource(listing: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in listing["resources"] if r["name"] == name)


def test_version_reports_kubernetes_1_37_like_a_real_api_server(api: Any) -> None:
    answer = api.get("/version")
    assert answer.text.startswith('{\n  "major": "1",') and answer.text.endswith("}")  # raw indented JSON
    version = answer.json()
    assert (version["major"], version["minor"]) == ("1", "37")
    assert version["gitVersion"].startswith("v1.37.")
    assert {"platform", "goVersion", "compiler", "buildDate", "gitCommit", "gitTreeState"} <= set(version)


def test_requests_without_the_token_are_unauthorized_with_a_status_body(kube: KubeSandbox, api: Any) -> None:
    api.session.headers["Authorization"] = "Bearer wrong"
    answer = api.get("/api/v1/namespaces")
    assert answer.status_code == 401
    assert answer.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_core_and_group_lists_name_their_preferred_versions(api: Any) -> None:
    assert api.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"]: g for g in api.get("/apis").json()["groups"]}
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert "v2" in [v["version"] for v in groups["autoscaling"]["versions"]]
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    # New beta and alpha APIs are off by default on a real 1.37 server.
    assert all(not v["version"].endswith(("alpha1", "beta1", "beta2")) for g in groups.values() for v in g["versions"])
    group = api.get("/apis/apps").json()
    assert group["kind"] == "APIGroup" and group["name"] == "apps"


@pytest.mark.parametrize(("path", "name", "namespaced", "kind", "short_names"), [
    ("/api/v1", "pods", True, "Pod", ["po"]),
    ("/api/v1", "namespaces", False, "Namespace", ["ns"]),
    ("/api/v1", "configmaps", True, "ConfigMap", ["cm"]),
    ("/api/v1", "services", True, "Service", ["svc"]),
    ("/apis/apps/v1", "deployments", True, "Deployment", ["deploy"]),
    ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False, "ClusterRole", None),
    ("/apis/networking.k8s.io/v1", "ingresses", True, "Ingress", ["ing"]),
    ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False, "CustomResourceDefinition",
     ["crd", "crds"]),
], ids=["pods", "namespaces", "configmaps", "services", "deployments", "clusterroles", "ingresses", "crds"])
def test_resource_lists_give_scope_kind_verbs_and_short_names(api: Any, path: str, name: str, namespaced: bool,
                                                              kind: str, short_names: list[str] | None) -> None:
    listing = api.get(path).json()
    assert listing["kind"] == "APIResourceList"
    assert listing["groupVersion"] == path.removeprefix("/api/").removeprefix("/apis/")
    entry = resource(listing, name)
    assert entry["namespaced"] is namespaced and entry["kind"] == kind
    assert entry.get("shortNames") == short_names
    assert set(entry["verbs"]) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}


def test_deployments_list_their_status_and_scale_subresources(api: Any) -> None:
    listing = api.get("/apis/apps/v1").json()
    assert resource(listing, "deployments/status") == {
        "name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
        "verbs": ["get", "patch", "update"]}
    scale = resource(listing, "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert "configmaps/status" not in [r["name"] for r in api.get("/api/v1").json()["resources"]]


def test_aggregated_discovery_answers_in_the_v2_format_kubectl_asks_for(api: Any) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    answer = api.get("/apis", headers={"Accept": accept})
    assert answer.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    body = answer.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    deployments = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced"
    assert {s["subresource"] for s in deployments["subresources"]} == {"status", "scale"}
    core = api.get("/api", headers={"Accept": accept}).json()
    assert [i["metadata"]["name"] for i in core["items"]] == [""]


def test_unknown_groups_and_resources_are_not_found(api: Any) -> None:
    for path in ("/apis/nope.example.com", "/apis/apps/v9", "/apis/apps/v1/namespaces/default/gizmos"):
        answer = api.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["message"] == "the server could not find the requested resource"


def test_a_crd_adds_its_types_to_discovery_and_deleting_it_removes_them(api: Any, m: Any) -> None:
    assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", m.crd()).status_code == 201
    crd = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert "example.com" in [g["name"] for g in api.get("/apis").json()["groups"]]
    listing = api.get("/apis/example.com/v1").json()
    assert resource(listing, "widgets")["shortNames"] == ["wd"]
    assert resource(listing, "widgets/status")["kind"] == "Widget"

    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    assert api.post("/apis/example.com/v1/namespaces/default/widgets", widget).status_code == 201

    assert api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").ok
    assert "example.com" not in [g["name"] for g in api.get("/apis").json()["groups"]]
    assert api.get("/apis/example.com/v1/namespaces/default/widgets/w1").status_code == 404


def test_kubectl_api_resources_lists_builtins_and_a_new_crd(kubectl: Any, api: Any, m: Any) -> None:
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", m.crd())
    result = kubectl("api-resources")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["deployments"][1:] == ["deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"][1:] == ["ns", "v1", "false", "Namespace"]
    assert rows["widgets"][1:] == ["wd", "example.com/v1", "true", "Widget"]


KUBECTL = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "kubectl"


@pytest.fixture
def slow_crds(client_for: Any) -> Iterator[Any]:
    """An emulator whose CRDs are Established 0.3 s after their creation, as on a real server."""
    with KubeSandbox(controller_delay=None, crd_delay=0.3) as sandbox:
        yield client_for(sandbox)


def test_a_new_crd_is_established_after_a_delay_and_served_only_then(slow_crds: Any, m: Any) -> None:
    api = slow_crds
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    created_at = time.monotonic()
    assert api.post(crds, m.crd()).status_code == 201
    crd = api.get(f"{crds}/widgets.example.com").json()
    established = next(c for c in crd["status"]["conditions"] if c["type"] == "Established")
    assert (established["status"], established["reason"]) == ("False", "Installing")
    assert "example.com" not in [g["name"] for g in api.get("/apis").json()["groups"]]
    assert api.post("/apis/example.com/v1/namespaces/default/widgets", widget).status_code == 404
    while api.get(f"{crds}/widgets.example.com").json()["status"]["conditions"][1]["status"] != "True":
        assert time.monotonic() - created_at < 5
        time.sleep(0.02)
    assert time.monotonic() - created_at >= 0.3
    crd = api.get(f"{crds}/widgets.example.com").json()
    assert crd["status"]["conditions"][1]["reason"] == "InitialNamesAccepted"
    assert [(f["manager"], f.get("subresource")) for f in crd["metadata"]["managedFields"]][-1] == (
        "kube-apiserver", "status")
    assert api.post("/apis/example.com/v1/namespaces/default/widgets", widget).status_code == 201
    # an update of an established CRD keeps its conditions as they were
    before = crd["status"]["conditions"]
    crd["metadata"]["labels"] = {"team": "a"}
    assert api.put(f"{crds}/widgets.example.com", crd).json()["status"]["conditions"] == before


@pytest.mark.integration  # runs the real kubectl
def test_kubectl_waits_for_a_crd_to_be_established_before_its_custom_resource(
        slow_crds: Any, m: Any, tmp_path: Path) -> None:
    kubeconfig = slow_crds.sandbox.write_kubeconfig(tmp_path / "kubeconfig")

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"),
                               *args], input=stdin, capture_output=True, text=True, timeout=60)

    widget = yaml.safe_dump({"apiVersion": "example.com/v1", "kind": "Widget",
                             "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 2}})
    assert kubectl("apply", "-f", "-", stdin=yaml.safe_dump(m.crd())).returncode == 0
    early = kubectl("apply", "-f", "-", stdin=widget)
    assert early.returncode == 1 and "ensure CRDs are installed first" in early.stderr, early.stderr
    waited = kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    assert waited.returncode == 0, waited.stderr
    assert kubectl("apply", "-f", "-", stdin=widget).returncode == 0
