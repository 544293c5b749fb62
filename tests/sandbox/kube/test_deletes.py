"""DELETE as the API server's registries answer it, through the official client's typed APIs: the
deleted object or a Success Status by kind, the object marked for deletion while finalizers hold it
(the garbage collector's own for Orphan and Foreground), preconditions, and bad DeleteOptions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
JOBS = "/apis/batch/v1/namespaces/default/jobs"


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], "selector": {"app": name}}}


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def _owned(m: Any, name: str, owner: Any, kind: str, api_version: str) -> dict[str, Any]:
    dependent: dict[str, Any] = m.configmap(name)
    dependent["metadata"]["ownerReferences"] = [{"apiVersion": api_version, "kind": kind,
                                                 "name": owner.metadata.name, "uid": owner.metadata.uid}]
    return dependent


def _refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as refused:
        call(*args, **kwargs)
    return refused.value.status, json.loads(refused.value.body)


def test_deleting_a_service_answers_the_service_as_it_was_last_stored(k8s: ApiClient) -> None:
    """The typed client parses the answer as a V1Service: a Status here was the issue's failure."""
    core = client.CoreV1Api(k8s)
    created = core.create_namespaced_service("default", _service("web"))
    deleted = core.delete_namespaced_service("web", "default")
    assert isinstance(deleted, client.V1Service)
    assert (deleted.metadata.uid, deleted.metadata.resource_version) == (created.metadata.uid,
                                                                          created.metadata.resource_version)
    assert deleted.metadata.deletion_timestamp is None
    assert _refused(core.read_namespaced_service, "web", "default")[0] == 404


def test_deleting_a_configmap_answers_a_success_status_naming_the_resource(k8s: ApiClient, m: Any) -> None:
    core = client.CoreV1Api(k8s)
    created = core.create_namespaced_config_map("default", m.configmap("a"))
    assert core.delete_namespaced_config_map("a", "default") == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "a", "kind": "configmaps", "uid": created.metadata.uid}}


def test_deleting_a_custom_resource_answers_a_status_with_its_group(k8s: ApiClient, m: Any) -> None:
    client.ApiextensionsV1Api(k8s).create_custom_resource_definition(m.crd())
    custom = client.CustomObjectsApi(k8s)
    widget = custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})
    answer = custom.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"] == {"name": "w", "group": "example.com", "kind": "widgets",
                                 "uid": widget["metadata"]["uid"]}


def test_deleting_an_unscheduled_pod_answers_it_marked_and_watchers_see_the_mark_then_the_delete(
        k8s: ApiClient) -> None:
    """A pod is deleted gracefully; with no node the grace period is 0, yet the mark is written first."""
    core = client.CoreV1Api(k8s)
    created = core.create_namespaced_pod("default", _pod("p"))
    deleted = core.delete_namespaced_pod("p", "default")
    assert isinstance(deleted, client.V1Pod)
    assert deleted.metadata.deletion_timestamp is not None and deleted.metadata.deletion_grace_period_seconds == 0
    assert deleted.metadata.generation == created.metadata.generation + 1
    events = watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1,
                                  resource_version=created.metadata.resource_version)
    seen = [(e["type"], e["object"].metadata.deletion_timestamp is not None) for e in events]
    assert seen == [("MODIFIED", True), ("DELETED", True)]


def test_an_object_held_by_a_finalizer_is_answered_marked_until_the_finalizer_is_removed(
        k8s: ApiClient, m: Any) -> None:
    core = client.CoreV1Api(k8s)
    body = m.configmap("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map("default", body)
    first, code, _headers = core.delete_namespaced_config_map_with_http_info("held", "default")
    assert code == 200  # not 202: the object stays, but the client did not ask orphanDependents=false
    meta = first["metadata"]
    assert (meta["finalizers"], meta["deletionGracePeriodSeconds"]) == (["example.com/hold"], 0)
    again, code, _headers = core.delete_namespaced_config_map_with_http_info("held", "default",
                                                                             orphan_dependents=False)
    assert code == 202 and again["metadata"]["resourceVersion"] == meta["resourceVersion"]
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    assert _refused(core.read_namespaced_config_map, "held", "default")[0] == 404


@pytest.mark.parametrize(("policy", "finalizer", "orphaned"), [
    ("Orphan", "orphan", True),
    ("Foreground", "foregroundDeletion", False),
], ids=["orphan", "foreground"])
def test_orphan_and_foreground_deletes_answer_the_owner_with_the_collectors_finalizer(
        k8s: ApiClient, m: Any, policy: str, finalizer: str, orphaned: bool) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    owner = apps.create_namespaced_deployment("default", m.deployment())
    core.create_namespaced_config_map("default", _owned(m, "dependent", owner, "Deployment", "apps/v1"))
    answer = apps.delete_namespaced_deployment("web", "default", propagation_policy=policy)
    meta = answer["metadata"]
    assert (meta["finalizers"], meta["deletionGracePeriodSeconds"], meta["generation"]) == ([finalizer], 0, 2)
    assert _refused(apps.read_namespaced_deployment, "web", "default")[0] == 404
    if orphaned:
        assert core.read_namespaced_config_map("dependent", "default").metadata.owner_references is None
    else:
        assert _refused(core.read_namespaced_config_map, "dependent", "default")[0] == 404


def test_a_replication_controller_orphans_its_dependents_unless_told_otherwise(k8s: ApiClient, m: Any) -> None:
    """core/v1 ReplicationControllers (like batch/v1 Jobs) keep the orphaning default of old."""
    core = client.CoreV1Api(k8s)
    rc = core.create_namespaced_replication_controller("default", {
        "metadata": {"name": "rc"}, "spec": {"replicas": 0, "selector": {"app": "rc"}, "template": {
            "metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    core.create_namespaced_config_map("default", _owned(m, "kept", rc, "ReplicationController", "v1"))
    answer = core.delete_namespaced_replication_controller("rc", "default")
    assert answer["metadata"]["finalizers"] == ["orphan"]
    assert core.read_namespaced_config_map("kept", "default").metadata.owner_references is None


def test_deleting_a_job_without_a_policy_warns_that_its_pods_are_kept(api: Any) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
    api.post(JOBS, job)
    unasked = api.delete(f"{JOBS}/once")
    assert unasked.headers["Warning"] == (
        '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to '
        'remove them or set propagationPolicy=Orphan to suppress this warning"')
    api.post(JOBS, job)
    assert "Warning" not in api.delete(f"{JOBS}/once?propagationPolicy=Background").headers


@pytest.mark.parametrize(("case", "message", "details"), [
    ("configmap-uid", 'Operation cannot be fulfilled on ConfigMap "a": the UID in the precondition (wrong) does not '
     "match the UID in record ({uid}). The object might have been deleted and then recreated",
     {"name": "a", "kind": "ConfigMap"}),
    ("deployment-resource-version", 'Operation cannot be fulfilled on Deployment.apps "web": the ResourceVersion in '
     "the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified",
     {"name": "web", "group": "apps", "kind": "Deployment"}),
    ("namespace-uid", 'Operation cannot be fulfilled on namespaces "team": Precondition failed: UID in precondition: '
     "wrong, UID in object meta: {uid}", {"name": "team", "kind": "namespaces"}),
], ids=["configmap-uid", "deployment-resource-version", "namespace-uid"])
def test_a_failed_precondition_is_a_conflict_worded_by_the_registry_that_checks_it(
        k8s: ApiClient, m: Any, case: str, message: str, details: dict[str, str]) -> None:
    core, apps = client.CoreV1Api(k8s), client.AppsV1Api(k8s)
    if case == "configmap-uid":
        created: Any = core.create_namespaced_config_map("default", m.configmap("a"))
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="wrong"))
        code, status = _refused(core.delete_namespaced_config_map, "a", "default", body=options)
    elif case == "deployment-resource-version":
        created = apps.create_namespaced_deployment("default", m.deployment())
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
        code, status = _refused(apps.delete_namespaced_deployment, "web", "default", body=options)
    else:
        created = core.create_namespace({"metadata": {"name": "team"}})
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="wrong"))
        code, status = _refused(core.delete_namespace, "team", body=options)
    assert (code, status["reason"]) == (409, "Conflict")
    assert status["message"] == message.format(uid=created.metadata.uid, rv=created.metadata.resource_version)
    assert status["details"] == details


@pytest.mark.parametrize(("options", "message"), [
    (client.V1DeleteOptions(propagation_policy="Sideways"), 'propagationPolicy: Unsupported value: "Sideways": '
     'supported values: "Foreground", "Background", "Orphan", "nil"'),
    (client.V1DeleteOptions(propagation_policy="Orphan", orphan_dependents=True),
     'propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set'),
], ids=["unknown-policy", "policy-and-orphan-dependents"])
def test_bad_delete_options_are_invalid_before_the_object_is_looked_up(
        k8s: ApiClient, options: client.V1DeleteOptions, message: str) -> None:
    code, status = _refused(client.CoreV1Api(k8s).delete_namespaced_config_map, "absent", "default", body=options)
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == f'DeleteOptions.meta.k8s.io "" is invalid: {message}'
    assert (status["details"]["group"], status["details"]["kind"]) == ("meta.k8s.io", "DeleteOptions")


def test_with_a_body_the_query_options_are_not_read(api: Any, m: Any) -> None:
    """The handler decodes DeleteOptions from the body when there is one, and then ignores the query."""
    owner = api.post(CONFIGMAPS, m.configmap("owner")).json()
    dependent = m.configmap("dependent")
    dependent["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                 "uid": owner["metadata"]["uid"]}]
    api.post(CONFIGMAPS, dependent)
    answer = api.delete(f"{CONFIGMAPS}/owner?propagationPolicy=Orphan", {})
    assert answer.json()["kind"] == "Status"  # Background: deleted at once, no orphan finalizer
    assert api.get(f"{CONFIGMAPS}/dependent").status_code == 404


def test_a_dry_run_delete_answers_as_the_delete_would_and_keeps_everything(k8s: ApiClient, m: Any) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service("default", _service("web"))
    held = m.configmap("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map("default", held)
    assert isinstance(core.delete_namespaced_service("web", "default", dry_run="All"), client.V1Service)
    marked = core.delete_namespaced_config_map("held", "default", dry_run="All")
    assert marked["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_service("web", "default").metadata.name == "web"
    assert core.read_namespaced_config_map("held", "default").metadata.deletion_timestamp is None


def test_deleting_a_namespace_answers_it_terminating_then_it_is_gone(k8s: ApiClient, m: Any) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", m.configmap("inside"))
    answer = core.delete_namespace("team")
    assert (answer["kind"], answer["status"]["phase"], answer["spec"]["finalizers"]) == (
        "Namespace", "Terminating", ["kubernetes"])
    assert answer["metadata"]["deletionTimestamp"] and "deletionGracePeriodSeconds" not in answer["metadata"]
    assert _refused(core.read_namespace, "team")[0] == 404


def test_deleting_a_crd_answers_it_terminating_and_its_custom_resources_go_with_it(k8s: ApiClient, m: Any) -> None:
    extensions, custom = client.ApiextensionsV1Api(k8s), client.CustomObjectsApi(k8s)
    extensions.create_custom_resource_definition(m.crd())
    custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    answer = extensions.delete_custom_resource_definition("widgets.example.com")
    assert answer["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    terminating = next(c for c in answer["status"]["conditions"] if c["type"] == "Terminating")
    assert (terminating["status"], terminating["reason"]) == ("True", "InstanceDeletionPending")
    assert _refused(extensions.read_custom_resource_definition, "widgets.example.com")[0] == 404
    assert _refused(custom.list_namespaced_custom_object, "example.com", "v1", "default", "widgets")[0] == 404
