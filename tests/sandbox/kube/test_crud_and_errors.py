"""CRUD on namespaced and cluster-scoped URLs, server-owned metadata, and the API server's Status errors."""

from __future__ import annotations

from typing import Any

import pytest

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def test_create_sets_server_owned_metadata_and_one_global_resource_version(api: Any, m: Any) -> None:
    first = api.post(CONFIGMAPS, m.configmap("a"))
    second = api.post(DEPLOYMENTS, m.deployment())
    assert (first.status_code, second.status_code) == (201, 201)
    a, web = first.json(), second.json()
    assert int(web["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert a["metadata"]["namespace"] == "default" and len(a["metadata"]["uid"]) == 36
    assert a["metadata"]["creationTimestamp"].endswith("Z")
    assert "generation" not in a["metadata"]  # ConfigMaps have no generation
    assert web["metadata"]["generation"] == 1
    listed = api.get(CONFIGMAPS).json()
    assert int(listed["metadata"]["resourceVersion"]) == int(web["metadata"]["resourceVersion"])
    # Items of a built-in list are encoded without their own kind and apiVersion, as the API server does.
    assert "kind" not in listed["items"][0] and listed["items"][0]["metadata"]["name"] == "a"


def test_namespaces_are_cluster_scoped_and_hold_namespaced_objects(api: Any, m: Any) -> None:
    created = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == {"phase": "Active"} and body["spec"] == {"finalizers": ["kubernetes"]}
    assert body["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    assert "namespace" not in body["metadata"]
    assert api.post("/api/v1/namespaces/team/configmaps", m.configmap("in-team")).status_code == 201
    everywhere = api.get("/api/v1/configmaps").json()["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere] == [("team", "in-team")]
    assert api.get("/api/v1/namespaces/team/status").json()["status"]["phase"] == "Active"


def test_deleting_a_namespace_deletes_its_content(api: Any, m: Any) -> None:
    api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})
    api.post("/api/v1/namespaces/gone/configmaps", m.configmap("c"))
    answer = api.delete("/api/v1/namespaces/gone")
    assert answer.status_code == 200 and answer.json()["status"]["phase"] == "Terminating"
    assert api.get("/api/v1/namespaces/gone").status_code == 404
    assert api.get("/api/v1/namespaces/gone/configmaps/c").status_code == 404


def test_generation_moves_only_with_spec_changes(api: Any, m: Any) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    labelled = api.patch(f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"tier": "front"}}}).json()
    assert labelled["metadata"]["generation"] == 1
    status = api.patch(f"{DEPLOYMENTS}/web/status", {"status": {"replicas": 1}}).json()
    assert status["metadata"]["generation"] == 1 and status["status"] == {"replicas": 1}
    scaled = api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 4}}).json()
    assert scaled["metadata"]["generation"] == 2


def test_status_is_written_only_through_the_status_subresource(api: Any, m: Any) -> None:
    created = api.post(DEPLOYMENTS, {**m.deployment(), "status": {"replicas": 9}}).json()
    assert created["status"] == {}
    ignored = api.patch(f"{DEPLOYMENTS}/web", {"status": {"replicas": 9}, "metadata": {"labels": {"x": "y"}}}).json()
    assert ignored["status"] == {} and ignored["metadata"]["labels"]["x"] == "y"
    only_status = api.patch(f"{DEPLOYMENTS}/web/status", {"status": {"replicas": 2}, "spec": {"replicas": 7}}).json()
    assert only_status["status"] == {"replicas": 2} and only_status["spec"]["replicas"] == 1


def test_put_with_a_stale_resource_version_is_a_conflict(api: Any, m: Any) -> None:
    created = api.post(CONFIGMAPS, m.configmap("c")).json()
    fresh = {**created, "data": {"k": "v2"}}
    assert api.put(f"{CONFIGMAPS}/c", fresh).status_code == 200
    stale = {**created, "data": {"k": "v3"}}
    answer = api.put(f"{CONFIGMAPS}/c", stale)
    assert answer.status_code == 409
    assert answer.json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply '
                   "your changes to the latest version and try again",
        "reason": "Conflict", "details": {"name": "c", "kind": "configmaps"}, "code": 409}
    unconditional = {**created, "data": {"k": "v4"}}
    del unconditional["metadata"]["resourceVersion"]
    assert api.put(f"{CONFIGMAPS}/c", unconditional).json()["data"] == {"k": "v4"}


@pytest.mark.parametrize(("method", "path", "body", "code", "reason", "message", "details"), [
    ("GET", f"{DEPLOYMENTS}/missing", None, 404, "NotFound", 'deployments.apps "missing" not found',
     {"name": "missing", "group": "apps", "kind": "deployments"}),
    ("GET", "/api/v1/namespaces/default/pods/missing", None, 404, "NotFound", 'pods "missing" not found',
     {"name": "missing", "kind": "pods"}),
    ("POST", "/api/v1/namespaces/nowhere/configmaps", "configmap", 404, "NotFound", 'namespaces "nowhere" not found',
     {"name": "nowhere", "kind": "namespaces"}),
    ("POST", CONFIGMAPS, "configmap-twice", 409, "AlreadyExists", 'configmaps "dup" already exists',
     {"name": "dup", "kind": "configmaps"}),
    ("PUT", f"{CONFIGMAPS}/other", "configmap-named-dup", 400, "BadRequest",
     "the name of the object (dup) does not match the name on the URL (other)", None),
    ("PATCH", f"{DEPLOYMENTS}/web", "replicas-negative", 422, "Invalid",
     'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0',
     {"name": "web", "group": "apps", "kind": "Deployment", "causes": [
         {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0",
          "field": "spec.replicas"}]}),
    ("POST", CONFIGMAPS, "configmap-bad-name", 422, "Invalid",
     'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain '
     "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
     "character (e.g. 'example.com', regex used for validation is "
     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')", "skip"),
    ("POST", CONFIGMAPS, "configmap-no-name", 422, "Invalid",
     'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required', "skip"),
    ("POST", f"{CONFIGMAPS}/named", "configmap", 405, "MethodNotAllowed",
     "the server does not allow this method on the requested resource", {}),
    ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(", None, 400, "BadRequest", None, None),
    ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=data.k%3Dv", None, 400, "BadRequest",
     "field label not supported: data.k", None),
], ids=["not-found-in-group", "not-found-core", "namespace-missing", "already-exists", "name-mismatch",
        "invalid-with-causes", "invalid-name", "name-required", "post-to-item", "bad-label-selector",
        "unsupported-field-selector"])
def test_failures_answer_the_canonical_status(api: Any, m: Any, method: str, path: str, body: str | None,
                                              code: int, reason: str, message: str | None,
                                              details: dict[str, Any] | str | None) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    payload: Any = None
    if body == "configmap":
        payload = m.configmap("c")
    elif body in ("configmap-twice", "configmap-named-dup"):
        api.post(CONFIGMAPS, m.configmap("dup"))
        payload = m.configmap("dup")
    elif body == "replicas-negative":
        payload = {"spec": {"replicas": -1}}
    elif body == "configmap-bad-name":
        payload = m.configmap("Bad_Name")
    elif body == "configmap-no-name":
        payload = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
    answer = api.request(method, path, payload,
                         content_type="application/merge-patch+json" if method == "PATCH" else "application/json")
    assert answer.status_code == code
    status = answer.json()
    assert (status["kind"], status["apiVersion"], status["status"], status["reason"], status["code"]) == (
        "Status", "v1", "Failure", reason, code)
    if message is not None:
        assert status["message"] == message
    if details != "skip":
        assert status.get("details") == details
    # Go's json.Encoder ends every body with a newline; clients that print or compare bodies see it.
    assert answer.content.endswith(b"}\n") and not answer.content.endswith(b"\n\n")


def test_generate_name_makes_a_unique_name(api: Any) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}}
    names = {api.post(CONFIGMAPS, body).json()["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("job-") and len(n) == 9 for n in names)


def test_delete_answers_a_success_status_or_the_object_and_garbage_collects_dependents(api: Any, m: Any) -> None:
    owner = api.post(CONFIGMAPS, m.configmap("owner")).json()
    dependent = m.configmap("dependent")
    dependent["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                 "uid": owner["metadata"]["uid"]}]
    api.post(CONFIGMAPS, dependent)
    answer = api.delete(f"{CONFIGMAPS}/owner")
    assert answer.status_code == 200
    assert answer.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": "owner", "kind": "configmaps", "uid": owner["metadata"]["uid"]}}
    assert api.get(f"{CONFIGMAPS}/dependent").status_code == 404


def test_orphan_propagation_keeps_dependents_and_drops_their_owner_reference(api: Any, m: Any) -> None:
    owner = api.post(CONFIGMAPS, m.configmap("owner")).json()
    dependent = m.configmap("dependent")
    dependent["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                 "uid": owner["metadata"]["uid"]}]
    api.post(CONFIGMAPS, dependent)
    api.delete(f"{CONFIGMAPS}/owner", {"propagationPolicy": "Orphan"})
    kept = api.get(f"{CONFIGMAPS}/dependent").json()
    assert "ownerReferences" not in kept["metadata"]


def test_finalizers_defer_deletion_until_they_are_removed(api: Any, m: Any) -> None:
    body = m.configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    api.post(CONFIGMAPS, body)
    deferred = api.delete(f"{CONFIGMAPS}/held")
    assert deferred.status_code == 200  # 202 only when the client sent orphanDependents: false
    assert deferred.json()["metadata"]["deletionTimestamp"]
    still = api.get(f"{CONFIGMAPS}/held").json()
    assert still["metadata"]["deletionTimestamp"] == deferred.json()["metadata"]["deletionTimestamp"]
    added = api.patch(f"{CONFIGMAPS}/held", {"metadata": {"finalizers": ["example.com/hold", "more"]}})
    assert added.status_code == 422
    released = api.patch(f"{CONFIGMAPS}/held", {"metadata": {"finalizers": None}})
    assert released.status_code == 200
    assert api.get(f"{CONFIGMAPS}/held").status_code == 404


@pytest.mark.parametrize("write", ["create", "update", "patch", "delete"])
def test_dry_run_validates_and_computes_but_stores_nothing(api: Any, m: Any, write: str) -> None:
    created = api.post(CONFIGMAPS, m.configmap("c")).json()
    rv = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    if write == "create":
        answer = api.post(f"{DEPLOYMENTS}?dryRun=All", m.deployment("dry"))
        assert answer.status_code == 201
        assert answer.json()["spec"]["replicas"] == 1 and "resourceVersion" not in answer.json()["metadata"]
        assert api.get(f"{DEPLOYMENTS}/dry").status_code == 404
    elif write == "update":
        answer = api.put(f"{CONFIGMAPS}/c?dryRun=All", {**created, "data": {"k": "dry"}})
        assert answer.json()["data"] == {"k": "dry"}
    elif write == "patch":
        answer = api.patch(f"{CONFIGMAPS}/c?dryRun=All", {"data": {"k": "dry"}})
        assert answer.json()["data"] == {"k": "dry"}
    else:
        assert api.delete(f"{CONFIGMAPS}/c?dryRun=All").status_code == 200
    assert api.get(f"{CONFIGMAPS}/c").json()["data"] == {"k": "v"}
    assert api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"] == rv
    invalid = api.post(f"{DEPLOYMENTS}?dryRun=All", m.deployment("x", replicas=-2))
    assert invalid.status_code == 422


def test_defaults_fill_what_a_real_server_fills(api: Any, m: Any) -> None:
    web = api.post(DEPLOYMENTS, m.deployment(image="nginx")).json()
    spec = web["spec"]
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (1, 10, 600)
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["schedulerName"]) == ("Always", "ClusterFirst",
                                                                             "default-scheduler")
    assert pod["terminationGracePeriodSeconds"] == 30 and pod["securityContext"] == {}
    container = pod["containers"][0]
    assert container["imagePullPolicy"] == "Always"  # no tag means latest
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    service = api.post("/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}).json()
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["sessionAffinity"] == "None"
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert service["spec"]["clusterIPs"] == [service["spec"]["clusterIP"]]
    # Re-sending the manifest without the allocated IP keeps it, as a real server does.
    again = api.put("/api/v1/namespaces/default/services/web", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}).json()
    assert again["spec"]["clusterIP"] == service["spec"]["clusterIP"]


def test_selector_of_a_deployment_is_immutable(api: Any, m: Any) -> None:
    api.post(DEPLOYMENTS, m.deployment())
    answer = api.patch(f"{DEPLOYMENTS}/web", {"spec": {"selector": {"matchLabels": {"app": "other"}},
                                                       "template": {"metadata": {"labels": {"app": "other"}}}}})
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"][0]["field"] == "spec.selector"
    assert answer.json()["message"] == (
        'Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:'
        'map[string]string{"app":"other"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable')


_POD: dict[str, Any] = {"metadata": {"labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}
IMMUTABLE_CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any], str, str, dict[str, Any]]] = {
    "service-cluster-ip": ("/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "10.96.0.50", "selector": {"app": "db"}, "ports": [{"port": 5432}]}},
        {"spec": {"clusterIP": "10.96.0.51"}}, "spec.clusterIPs[0]", "may not change once set",
        {"metadata": {"labels": {"ok": "yes"}}}),
    "job-template": ("/apis/batch/v1/namespaces/default/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "db"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", **_POD["spec"]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:18"}]}}}},
        "spec.template", "field is immutable", {"spec": {"ttlSecondsAfterFinished": 60}}),
    "statefulset-service-name": ("/apis/apps/v1/namespaces/default/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": _POD}},
        {"spec": {"serviceName": "other"}}, "spec", "updates to statefulset spec for fields other than",
        {"spec": {"replicas": 3}}),
    "pvc-storage-class": ("/api/v1/namespaces/default/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"spec": {"storageClassName": "fast"}}, "spec", "spec is immutable after creation",
        {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
    "secret-type": ("/api/v1/namespaces/default/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
        "stringData": {"tls.crt": "x", "tls.key": "y"}},
        {"type": "kubernetes.io/tls"}, "type", "field is immutable", {"stringData": {"tls.crt": "z"}}),
}


@pytest.mark.parametrize("case", list(IMMUTABLE_CASES))
def test_changes_to_immutable_fields_are_422_naming_the_field_and_the_rest_stays_mutable(
        api: Any, case: str) -> None:
    collection, body, change, field, words, allowed = IMMUTABLE_CASES[case]
    assert api.post(collection, body).status_code == 201, case
    answer = api.patch(f"{collection}/db", change)
    assert answer.status_code == 422, answer.text
    assert answer.json()["reason"] == "Invalid"
    cause = answer.json()["details"]["causes"][0]
    assert cause["field"] == field and words in cause["message"]
    applied = api.patch(f"{collection}/db?fieldManager=t&force=true", {**body, **change},
                        content_type="application/apply-patch+yaml")
    assert applied.status_code == 422  # server-side apply says the same
    assert api.patch(f"{collection}/db", allowed).status_code == 200, case


def test_an_immutable_configmap_refuses_data_changes(api: Any, m: Any) -> None:
    body = m.configmap("frozen")
    body["immutable"] = True
    api.post(CONFIGMAPS, body)
    answer = api.patch(f"{CONFIGMAPS}/frozen", {"data": {"k": "changed"}})
    assert answer.status_code == 422
    assert answer.json()["message"] == (
        'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set')
    assert api.patch(f"{CONFIGMAPS}/frozen", {"metadata": {"labels": {"ok": "yes"}}}).status_code == 200


def test_an_unsupported_enum_value_is_invalid_with_the_supported_values(api: Any, m: Any) -> None:
    body = m.deployment()
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    answer = api.post(DEPLOYMENTS, body)
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"] == [{
        "reason": "FieldValueNotSupported",
        "message": 'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"',
        "field": "spec.template.spec.containers[0].imagePullPolicy"}]


def _pb(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: length-delimited for bytes, varint for an int (small values only)."""
    if isinstance(payload, int):
        return bytes([number << 3, payload])
    return bytes([number << 3 | 2, len(payload)]) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _pb(1, api_version.encode()) + _pb(2, kind.encode())
    return b"k8s\x00" + _pb(1, type_meta) + _pb(2, raw)


def test_protobuf_bodies_drop_go_zero_values_and_refuse_fields_they_cannot_read(api: Any) -> None:
    meta = _pb(1, _pb(1, b"pb") + _pb(7, 0) + _pb(8, b""))  # name; generation 0 and an empty time: unset
    body = _envelope("v1", "ConfigMap", meta + _pb(2, _pb(1, b"k") + _pb(2, b"v")) + _pb(4, 0))
    created = api.post(CONFIGMAPS, body, content_type="application/vnd.kubernetes.protobuf")
    assert created.status_code == 201, created.text
    assert created.json()["data"] == {"k": "v"} and created.json()["immutable"] is False  # a pointer: kept
    assert created.json()["metadata"]["creationTimestamp"] != "1970-01-01T00:00:00Z"
    unknown = _envelope("v1", "ConfigMap", _pb(1, _pb(1, b"pb2")) + _pb(9, b"something"))
    refused = api.post(CONFIGMAPS, unknown, content_type="application/vnd.kubernetes.protobuf")
    assert refused.status_code == 415 and refused.json()["reason"] == "UnsupportedMediaType"
    ignored = _envelope("v1", "ConfigMap", _pb(1, _pb(1, b"pb3")) + _pb(9, b""))  # unknown but zero
    assert api.post(CONFIGMAPS, ignored, content_type="application/vnd.kubernetes.protobuf").status_code == 201
