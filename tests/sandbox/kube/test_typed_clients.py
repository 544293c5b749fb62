"""Every kind the emulator serves, through the official client's typed APIs as their users call them
(create, read, replace, patch, delete; the 409s of a second create and of a stale replace), and
`kubernetes.utils.create_from_yaml` on multi-document and List files, conflicts included.

The typed client parses every answer into its model: a missing required field, or a Status where
the API answers the object, fails here as it would in a user's program.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sandbox.kube.types import ResourceType, builtin_types, definitions, schema_for

SERVED = builtin_types()
# (group, kind) whose DELETE answers the object: the registries with ReturnDeletedObject, plus the
# CRD registry, whose first DELETE answers the CRD marked for cleanup. The others answer a Status.
ANSWERS_THE_OBJECT = frozenset({
    ("", "Namespace"), ("", "Pod"), ("", "PodTemplate"), ("", "PersistentVolume"), ("", "PersistentVolumeClaim"),
    ("", "ResourceQuota"), ("", "Service"), ("", "ServiceAccount"),
    ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"), ("storage.k8s.io", "VolumeAttributesClass"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "DeviceTaintRule"), ("resource.k8s.io", "ResourceClaim"),
    ("resource.k8s.io", "ResourceClaimTemplate"), ("resource.k8s.io", "ResourceSlice"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
})
# Kinds whose default propagation orphans (core/v1 and batch/v1 compatibility): a DELETE without a
# policy answers the object with the garbage collector's `orphan` finalizer.
ORPHANS_BY_DEFAULT = frozenset({("", "ReplicationController"), ("batch", "Job")})
CONTAINERS = [{"name": "main", "image": "nginx:1.27"}]
WORKLOAD = {"selector": {"matchLabels": {"app": "typed"}},
            "template": {"metadata": {"labels": {"app": "typed"}}, "spec": {"containers": CONTAINERS}}}
# Specs the emulator validates (or that a real server would refuse empty); other kinds get the fields
# their schema requires.
SPECS: dict[str, dict[str, Any]] = {
    "Pod": {"spec": {"containers": CONTAINERS}},
    "Deployment": {"spec": WORKLOAD},
    "ReplicaSet": {"spec": WORKLOAD},
    "DaemonSet": {"spec": WORKLOAD},
    "StatefulSet": {"spec": {**WORKLOAD, "serviceName": "typed"}},
    "ReplicationController": {"spec": {"selector": {"app": "typed"}, "template": WORKLOAD["template"]}},
    "Service": {"spec": {"ports": [{"port": 80}], "selector": {"app": "typed"}}},
    "CustomResourceDefinition": {"spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}},
}
NAMES = {"CustomResourceDefinition": "widgets.example.com", "IPAddress": "10.96.0.20", "ServiceCIDR": "extra"}


def _snake(kind: str) -> str:
    """`APIService` -> `api_service`, as the generated method names (and create_from_yaml) spell kinds."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", kind)).lower()


def _typed_api(k8s: ApiClient, rtype: ResourceType) -> Any:
    """`CoreV1Api`, `AppsV1Api`, `RbacAuthorizationV1Api`, `ApiregistrationV1Api`, … for the type."""
    group = "".join(word.capitalize() for word in rtype.group.removesuffix(".k8s.io").split(".")) or "Core"
    return getattr(client, f"{group}{rtype.version.capitalize()}Api")(k8s)


def _required(schema: dict[str, Any], top: bool = False) -> Any:
    """The smallest value the schema accepts: required properties only, enums' first values."""
    while "$ref" in schema:
        schema = definitions()[schema["$ref"].rsplit("/", 1)[-1]]
    kind = schema.get("type")
    kind = next((t for t in kind if t != "null"), None) if isinstance(kind, list) else kind
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        skipped = ("apiVersion", "kind", "metadata") if top else ()
        return {key: _required(schema["properties"][key]) for key in schema.get("required", []) if key not in skipped}
    formats = {"byte": "dHlwZWQ=", "date-time": "2026-01-01T00:00:00Z"}
    plain: dict[str | None, Any] = {"array": [], "integer": 1, "number": 1, "boolean": False}
    return formats.get(schema.get("format", ""), plain.get(kind, "typed"))


def _manifest(rtype: ResourceType, name: str) -> dict[str, Any]:
    schema = schema_for(rtype.group, rtype.version, rtype.kind) or {}
    body = SPECS.get(rtype.kind) or _required(schema, top=True)
    return {"apiVersion": rtype.group_version, "kind": rtype.kind, "metadata": {"name": name}, **body}


def _refused(call: Any, *args: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as refused:
        call(*args)
    return refused.value.status, json.loads(refused.value.body)


class Typed:
    """One type's generated methods: `create_namespaced_pod(namespace, body)`, `read_node(name)`, …"""

    def __init__(self, k8s: ApiClient, rtype: ResourceType) -> None:
        self.api = _typed_api(k8s, rtype)
        self.rtype = rtype
        self.scope = "namespaced_" if rtype.namespaced else ""

    def __getattr__(self, verb: str) -> Any:
        method = getattr(self.api, f"{verb}_{self.scope}{_snake(self.rtype.kind)}")
        if not self.rtype.namespaced:
            return method
        if verb == "create":
            return lambda body: method("default", body)
        return lambda name, *rest: method(name, "default", *rest)


@pytest.mark.parametrize("rtype", SERVED, ids=lambda t: f"{t.group_version}/{t.kind}")
def test_every_served_kind_goes_through_its_typed_api_from_create_to_delete(
        k8s: ApiClient, rtype: ResourceType) -> None:
    typed = Typed(k8s, rtype)
    name = NAMES.get(rtype.kind, f"typed-{rtype.singular}")
    resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
    created = typed.create(_manifest(rtype, name))
    assert created.metadata.name == name and created.metadata.uid
    assert _refused(typed.create, _manifest(rtype, name)) == (409, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'{resource} "{name}" already exists', "reason": "AlreadyExists",
        "details": {"name": name, **({"group": rtype.group} if rtype.group else {}), "kind": rtype.plural},
        "code": 409})

    read = typed.read(name)
    read.metadata.labels = {**(read.metadata.labels or {}), "replaced": "yes"}
    replaced = typed.replace(name, read)
    assert replaced.metadata.labels["replaced"] == "yes"
    assert replaced.metadata.resource_version != read.metadata.resource_version
    read.metadata.labels["replaced"] = "again"  # still carries the resourceVersion it was read at
    code, stale = _refused(typed.replace, name, read)
    assert (code, stale["reason"], stale["message"]) == (409, "Conflict", (
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; please apply your '
        "changes to the latest version and try again"))
    patched = typed.patch(name, {"metadata": {"labels": {"patched": "yes"}}})
    assert patched.metadata.labels == {**replaced.metadata.labels, "patched": "yes"}

    deleted = typed.delete(name)
    if (rtype.group, rtype.kind) in ANSWERS_THE_OBJECT:
        answered = k8s.sanitize_for_serialization(deleted)["metadata"]
        assert (answered["name"], answered["uid"]) == (name, created.metadata.uid)
    elif (rtype.group, rtype.kind) in ORPHANS_BY_DEFAULT:
        assert deleted["metadata"]["finalizers"] == ["orphan"] and deleted["metadata"]["deletionTimestamp"]
    else:
        assert deleted["kind"] == "Status" and deleted["status"] == "Success"
        assert deleted["details"] == {"name": name, **({"group": rtype.group} if rtype.group else {}),
                                      "kind": rtype.plural, "uid": created.metadata.uid}
    assert _refused(typed.read, name)[0] == 404


MULTI_DOCUMENT = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.shop.example.com}
spec: {group: shop.example.com, version: v1alpha1, groupPriorityMinimum: 100, versionPriority: 10,
       service: {name: api, namespace: shop}, insecureSkipTLSVerify: true}
"""

LIST_FILE = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {mode: fast}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: worker}
  spec:
    selector: {matchLabels: {app: worker}}
    template:
      metadata: {labels: {app: worker}}
      spec: {containers: [{name: worker, image: busybox}]}
"""

SERVICE_LIST = """\
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: one}
  spec: {selector: {app: one}, ports: [{port: 80}]}
- metadata: {name: two}
  spec: {selector: {app: two}, ports: [{port: 81}]}
"""


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(text)
    return str(path)


def test_create_from_yaml_creates_every_document_and_the_typed_apis_read_them_back(
        k8s: ApiClient, tmp_path: Path) -> None:
    created = utils.create_from_yaml(k8s, _file(tmp_path, MULTI_DOCUMENT))
    assert [type(obj).__name__ for [obj] in created] == ["V1Namespace", "V1Deployment", "V1Service", "V1Role",
                                                          "V1APIService"]
    assert client.AppsV1Api(k8s).read_namespaced_deployment("web", "shop").spec.replicas == 2
    assert client.CoreV1Api(k8s).read_namespaced_service("web", "shop").spec.ports[0].target_port == 8080
    role = client.RbacAuthorizationV1Api(k8s).read_namespaced_role("reader", "shop")
    assert role.rules[0].verbs == ["get", "list"]
    service = client.ApiregistrationV1Api(k8s).read_api_service("v1alpha1.shop.example.com")
    assert (service.spec.group, service.spec.version, service.spec.service.name) == ("shop.example.com",
                                                                                     "v1alpha1", "api")


@pytest.mark.parametrize(("text", "created"), [
    (LIST_FILE, [("ConfigMap", "settings"), ("Deployment", "worker")]),
    (SERVICE_LIST, [("Service", "one"), ("Service", "two")]),
], ids=["list", "implicit-service-list"])
def test_create_from_yaml_creates_the_items_of_a_list_in_the_namespace_given(
        k8s: ApiClient, tmp_path: Path, text: str, created: list[tuple[str, str]]) -> None:
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": "team"}})
    [objects] = utils.create_from_yaml(k8s, _file(tmp_path, text), namespace="team")
    assert [(type(o).__name__.removeprefix("V1"), o.metadata.name, o.metadata.namespace) for o in objects] == [
        (kind, name, "team") for kind, name in created]


def test_create_from_yaml_reports_each_conflict_with_the_api_servers_status_body(
        k8s: ApiClient, tmp_path: Path) -> None:
    """FailToCreateError prints each Status body as the server sent it, its newline included."""
    path = _file(tmp_path, MULTI_DOCUMENT)
    utils.create_from_yaml(k8s, path)
    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_yaml(k8s, path)
    assert [e.status for e in failed.value.api_exceptions] == [409] * 5
    expected = [("namespaces", "shop", None), ("deployments", "web", "apps"), ("services", "web", None),
                ("roles", "reader", "rbac.authorization.k8s.io"),
                ("apiservices", "v1alpha1.shop.example.com", "apiregistration.k8s.io")]
    bodies = [json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": f'{plural}{"." + group if group else ""} "{name}" already exists',
                          "reason": "AlreadyExists",
                          "details": {"name": name, **({"group": group} if group else {}), "kind": plural},
                          "code": 409}, separators=(",", ":")) + "\n" for plural, name, group in expected]
    assert str(failed.value) == "".join(f"Error from server (Conflict): {body}" for body in bodies)


def test_create_from_yaml_with_apply_is_idempotent(k8s: ApiClient) -> None:
    documents = list(yaml.safe_load_all(MULTI_DOCUMENT))[:3]
    for _ in range(2):
        # server-side apply, twice; the namespace given goes into every path, so it must be the objects' own
        utils.create_from_yaml(k8s, yaml_objects=documents, apply=True, namespace="shop")
    deployment = client.AppsV1Api(k8s).read_namespaced_deployment("web", "shop")
    assert deployment.metadata.generation == 1
    assert [(f.manager, f.operation) for f in deployment.metadata.managed_fields] == [("python-client", "Apply")]
