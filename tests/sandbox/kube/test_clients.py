"""The official `kubernetes` client (typed APIs, watch, DynamicClient) and kubectl against the emulator."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException

from sandbox.kube import KubeSandbox, serve

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"""


def test_typed_client_creates_reads_patches_and_deletes(k8s: client.ApiClient, m: Any) -> None:
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    created = apps.create_namespaced_deployment("shop", m.deployment())
    assert created.metadata.generation == 1 and created.spec.replicas == 1
    patched = apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    listed = apps.list_namespaced_deployment("shop", label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", "shop")
    assert missing.value.status == 404
    assert yaml.safe_load(missing.value.body)["reason"] == "NotFound"
    apps.delete_namespaced_deployment("web", "shop")
    assert apps.list_namespaced_deployment("shop").items == []


def test_typed_watch_streams_changes(k8s: client.ApiClient, m: Any) -> None:
    core = client.CoreV1Api(k8s)
    rv = core.create_namespaced_config_map("default", m.configmap("a")).metadata.resource_version
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    stream = watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                  timeout_seconds=5)
    event = next(stream)
    assert event["type"] == "MODIFIED" and event["object"].data == {"k": "2"}


def test_dynamic_client_discovers_builtins_and_custom_resources(k8s: client.ApiClient, m: Any) -> None:
    dyn = dynamic.DynamicClient(k8s)
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body=m.crd())
    dyn.resources.invalidate_cache()
    widgets = dyn.resources.get(api_version="example.com/v1", kind="Widget")
    assert widgets.namespaced and widgets.name == "widgets"
    widgets.create(namespace="default", body={"apiVersion": "example.com/v1", "kind": "Widget",
                                              "metadata": {"name": "w"}, "spec": {"size": 1}})
    fetched = widgets.get(namespace="default", name="w")
    assert fetched.spec.size == 1 and fetched.metadata.generation == 1
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.create(namespace="default", body=m.deployment())
    patched = deployments.patch(namespace="default", name="web", body={"spec": {"replicas": 2}},
                                content_type="application/merge-patch+json")
    assert patched.spec.replicas == 2


def test_kubectl_create_apply_get_diff_scale_and_delete(kubectl: Any, kube: KubeSandbox) -> None:
    assert kubectl("create", "namespace", "shop").returncode == 0
    applied = kubectl("apply", "-f", "-", stdin=DEPLOYMENT_YAML)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "deployment.apps/web created"
    again = kubectl("apply", "-f", "-", stdin=DEPLOYMENT_YAML)
    assert again.stdout.strip() == "deployment.apps/web unchanged"
    assert kubectl("diff", "-f", "-", stdin=DEPLOYMENT_YAML).returncode == 0
    changed = kubectl("diff", "-f", "-", stdin=DEPLOYMENT_YAML.replace("nginx:1.27", "nginx:1.28"))
    assert changed.returncode == 1 and "+      - image: nginx:1.28" in changed.stdout
    live = yaml.safe_load(kubectl("get", "deployment", "web", "-n", "shop", "-o", "yaml").stdout)
    assert live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "kubectl.kubernetes.io/last-applied-configuration" in live["metadata"]["annotations"]
    assert kubectl("scale", "deployment/web", "-n", "shop", "--replicas=3").returncode == 0
    assert yaml.safe_load(kubectl("get", "deploy", "web", "-n", "shop", "-o", "yaml").stdout)["spec"]["replicas"] == 3
    deleted = kubectl("delete", "deployment", "web", "-n", "shop")
    assert deleted.returncode == 0, deleted.stderr
    assert kubectl("get", "deployment", "web", "-n", "shop").returncode == 1
    assert kubectl("delete", "namespace", "shop").returncode == 0
    assert kubectl("get", "namespace", "shop").returncode == 1


def test_kubectl_applies_a_crd_then_its_custom_resource(kubectl: Any, m: Any) -> None:
    applied = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(m.crd()))
    assert applied.returncode == 0, applied.stderr
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
              "spec": {"size": 2}}
    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget))
    assert result.returncode == 0, result.stderr
    got = yaml.safe_load(kubectl("get", "wd", "w", "-o", "yaml").stdout)
    assert got["spec"] == {"size": 2}


def test_kubectl_reports_the_api_servers_error_messages(kubectl: Any) -> None:
    bad = DEPLOYMENT_YAML.replace("namespace: shop", "namespace: default").replace("matchLabels: {app: web}",
                                                                                  "matchLabels: {app: other}")
    result = kubectl("apply", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert 'The Deployment "web" is invalid' in result.stderr
    assert "spec.template.metadata.labels" in result.stderr


def test_serve_writes_a_kubeconfig_and_serves_until_stopped(tmp_path: Path, kubectl: Any) -> None:
    kubeconfig = tmp_path / "served" / "config"
    ready = threading.Event()
    stop = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=serve, args=(0, kubeconfig), kwargs={"stop": stop, "on_ready": on_ready},
                              daemon=True)
    thread.start()
    assert ready.wait(10)
    written = yaml.safe_load(kubeconfig.read_text())
    assert written["clusters"][0]["cluster"]["server"] == urls[0]
    assert urls[0].startswith("https://127.0.0.1:")
    assert written["users"][0]["user"]["token"]
    served = type(kubectl)(kubeconfig, tmp_path / "cache2")
    version = served("version", "-o", "yaml")
    assert version.returncode == 0, version.stderr
    assert yaml.safe_load(version.stdout)["serverVersion"]["minor"] == "37"
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_each_fixture_server_starts_fresh(kube: KubeSandbox, api: Any, client_for: Any, m: Any) -> None:
    api.post("/api/v1/namespaces/default/configmaps", m.configmap("only-here"))
    with KubeSandbox() as other:
        client_other = client_for(other)
        listed = client_other.get("/api/v1/namespaces/default/configmaps").json()["items"]
        names = [i["metadata"]["name"] for i in listed]
        assert "only-here" not in names


def test_kubectl_apply_prune_by_label_deletes_only_what_left_the_set(kubectl: Any) -> None:
    two = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: default, labels: {set: demo}}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b, namespace: default, labels: {set: demo}}
data: {k: v}
"""
    assert kubectl("apply", "--prune", "-l", "set=demo", "-f", "-", stdin=two).returncode == 0
    kubectl("create", "configmap", "unlabelled", "--from-literal=k=v")
    pruned = kubectl("apply", "--prune", "-l", "set=demo", "-f", "-", stdin=two.split("---")[0])
    assert pruned.returncode == 0, pruned.stderr
    assert "configmap/b pruned" in pruned.stdout
    names = kubectl("get", "configmaps", "-o", "name").stdout.split()
    assert "configmap/a" in names and "configmap/unlabelled" in names and "configmap/b" not in names


def test_dynamic_client_server_side_apply_and_dry_run(k8s: client.ApiClient, m: Any) -> None:
    deployments = dynamic.DynamicClient(k8s).resources.get(api_version="apps/v1", kind="Deployment")
    applied = deployments.server_side_apply(namespace="default", body=m.deployment(), field_manager="tidegate")
    assert applied.metadata.managedFields[0].manager == "tidegate"
    preview = deployments.server_side_apply(namespace="default", body=m.deployment(image="nginx:1.28"),
                                            field_manager="tidegate", dry_run="All")
    assert preview.spec.template.spec.containers[0].image == "nginx:1.28"
    live = deployments.get(namespace="default", name="web")
    assert live.spec.template.spec.containers[0].image == "nginx:1.27"
    assert live.metadata.resourceVersion == applied.metadata.resourceVersion


def test_kubectl_create_deployment_then_expose_it(kubectl: Any) -> None:
    """`kubectl create deployment` sends protobuf (client-go's typed clients do not fall back to
    JSON on 415), `kubectl expose` reads it back and creates the Service from its selector."""
    created = kubectl("create", "deployment", "web", "--image=nginx:1.27", "--port=8080", "--replicas=2")
    assert created.returncode == 0, created.stderr
    exposed = kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080")
    assert exposed.returncode == 0, exposed.stderr
    deployment = yaml.safe_load(kubectl("get", "deployment", "web", "-o", "yaml").stdout)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["ports"]) == ("nginx:1.27", [{"containerPort": 8080, "protocol": "TCP"}])
    assert deployment["metadata"]["creationTimestamp"] != "1970-01-01T00:00:00Z"
    assert "creationTimestamp" not in deployment["spec"]["template"]["metadata"]
    service = yaml.safe_load(kubectl("get", "service", "web", "-o", "yaml").stdout)
    assert service["spec"]["selector"] == {"app": "web"}
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert kubectl("rollout", "status", "deployment/web", "--timeout=1s").returncode in (0, 1)  # served, not hung


TYPED_CREATES = {
    "deployment": ["deployment", "web", "--image=nginx:1.27", "--port=80", "--replicas=0"],
    "job": ["job", "once", "--image=busybox", "--", "echo", "hi"],
    "cronjob": ["cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--restart=Never"],
    "service-nodeport": ["service", "nodeport", "np", "--tcp=81:web", "--node-port=30001"],
    "service-externalname": ["service", "externalname", "ext", "--external-name=example.com"],
    "ingress": ["ingress", "web", "--rule=foo.com/bar*=svc1:8080,tls=my-cert", "--class=nginx"],
    "pdb": ["pdb", "web", "--selector=app=x", "--min-available=50%"],
    "role": ["role", "reader", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=a"],
    "rolebinding": ["rolebinding", "rb", "--role=reader", "--user=u", "--serviceaccount=default:sa"],
    "clusterrole": ["clusterrole", "cr", "--verb=get", "--non-resource-url=/logs"],
    "clusterrolebinding": ["clusterrolebinding", "crb", "--clusterrole=cr", "--group=g"],
    "priorityclass": ["priorityclass", "zero", "--value=0", "--description=d", "--preemption-policy=Never"],
    "quota": ["quota", "q", "--hard=cpu=1,pods=2", "--scopes=NotBestEffort"],
}


@pytest.mark.parametrize("command", list(TYPED_CREATES))
def test_kubectl_typed_creates_in_protobuf_store_what_the_same_command_sends_in_json(
        kubectl: Any, command: str) -> None:
    """The JSON kubectl prints for `--dry-run=client`, created through JSON as a server dry run,
    must equal what the protobuf body of the same command creates."""
    args = TYPED_CREATES[command]
    printed = kubectl("create", "--dry-run=client", "-o", "json", *args)
    assert printed.returncode == 0, printed.stderr
    by_json = kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", stdin=printed.stdout)
    assert by_json.returncode == 0, by_json.stderr
    created = kubectl("create", "-o", "name", *args)
    assert created.returncode == 0, created.stderr
    by_protobuf = kubectl("get", created.stdout.strip(), "-o", "json")  # unstructured, as the dry run prints

    def comparable(text: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(text.replace(json.loads(text)["metadata"]["uid"], "<uid>"))
        for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
            obj["metadata"].pop(key, None)
        for key in ("clusterIP", "clusterIPs"):  # allocated afresh by each create
            obj.get("spec", {}).pop(key, None)
        return obj

    assert comparable(by_protobuf.stdout) == comparable(by_json.stdout)
