"""Server-side apply: managedFields per manager, merge by list keys, removal of dropped fields, conflicts, force."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sandbox.kube import KubeSandbox

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
APPLY = "application/apply-patch+yaml"


def apply(api: Any, body: dict[str, Any], manager: str = "tidegate", force: bool = False,
          path: str = f"{DEPLOYMENTS}/web", **params: str) -> Any:
    query = {"fieldManager": manager, **({"force": "true"} if force else {}), **params}
    return api.patch(path, yaml.safe_dump(body), content_type=APPLY, params=query)


def entry(obj: dict[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any]:
    return next(e for e in obj["metadata"]["managedFields"]
                if e["manager"] == manager and e["operation"] == operation)


def test_apply_creates_the_object_and_owns_exactly_the_applied_fields(api: Any, m: Any) -> None:
    answer = apply(api, m.deployment())
    assert answer.status_code == 201
    created = answer.json()
    assert created["spec"]["replicas"] == 1  # defaulted, but not owned
    mine = entry(created, "tidegate")
    assert (mine["apiVersion"], mine["fieldsType"]) == ("apps/v1", "FieldsV1")
    assert mine["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {".": {}, 'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
            }}}}}}


def test_applying_the_same_configuration_again_is_a_no_op(api: Any, m: Any) -> None:
    first = apply(api, m.deployment()).json()
    again = apply(api, m.deployment())
    assert again.status_code == 200
    assert again.json()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again.json()["metadata"]["managedFields"] == first["metadata"]["managedFields"]


def test_fields_dropped_from_the_configuration_are_removed_unless_someone_else_owns_them(api: Any, m: Any) -> None:
    body = m.deployment(labels={"app": "web", "team": "a", "tier": "front"})
    apply(api, body)
    api.patch(f"{DEPLOYMENTS}/web", {"metadata": {"labels": {"tier": "back"}}}, params={"fieldManager": "editor"})
    trimmed = m.deployment(labels={"app": "web"})
    labels = apply(api, trimmed).json()["metadata"]["labels"]
    # "team" was only ours and goes; "tier" was changed by another manager, who owns it now, and stays.
    assert labels == {"app": "web", "tier": "back"}


def test_list_items_merge_by_key_and_other_managers_items_stay(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {
        "spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}}
    merged = apply(api, sidecar, manager="injector").json()
    names = [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "sidecar"]
    again = apply(api, m.deployment(image="nginx:1.28")).json()
    containers = {c["name"]: c["image"] for c in again["spec"]["template"]["spec"]["containers"]}
    assert containers == {"web": "nginx:1.28", "sidecar": "busybox:1.36"}


def test_changing_a_field_another_manager_owns_is_a_conflict_with_the_real_message(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}}, params={"fieldManager": "kubectl-edit"})
    answer = apply(api, m.deployment(replicas=2))
    assert answer.status_code == 409
    status = answer.json()
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas')
    assert status["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                            "message": 'conflict with "kubectl-edit" using apps/v1',
                                            "field": ".spec.replicas"}]
    assert api.get(f"{DEPLOYMENTS}/web").json()["spec"]["replicas"] == 3


def test_several_conflicts_are_grouped_by_manager(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3, "minReadySeconds": 5}},
              params={"fieldManager": "kubectl-edit"})
    body = m.deployment(replicas=2)
    body["spec"]["minReadySeconds"] = 1
    message = apply(api, body).json()["message"]
    assert message == ('Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n'
                       "- .spec.minReadySeconds\n- .spec.replicas")


def test_force_takes_ownership_from_the_other_manager(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    api.patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 3}}, params={"fieldManager": "kubectl-edit"})
    forced = apply(api, m.deployment(replicas=2), force=True).json()
    assert forced["spec"]["replicas"] == 2
    assert "f:replicas" in entry(forced, "tidegate")["fieldsV1"]["f:spec"]
    assert [e["manager"] for e in forced["metadata"]["managedFields"]] == ["tidegate"]


def test_agreeing_on_a_value_shares_ownership_without_conflict(api: Any, m: Any) -> None:
    apply(api, m.deployment(replicas=2))
    shared = apply(api, m.deployment(replicas=2), manager="other")
    assert shared.status_code == 200
    assert {e["manager"] for e in shared.json()["metadata"]["managedFields"]} == {"tidegate", "other"}


def test_dry_run_apply_shows_the_result_and_stores_nothing(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    preview = apply(api, m.deployment(image="nginx:1.28"), dryRun="All").json()
    assert preview["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert preview["metadata"]["generation"] == 2
    live = api.get(f"{DEPLOYMENTS}/web").json()
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert live["metadata"]["generation"] == 1


def test_apply_needs_a_field_manager(api: Any, m: Any) -> None:
    answer = api.patch(f"{DEPLOYMENTS}/web", yaml.safe_dump(m.deployment()), content_type=APPLY)
    assert answer.status_code == 400


def test_update_operations_are_recorded_for_their_manager(api: Any, m: Any) -> None:
    created = api.post(DEPLOYMENTS, m.deployment(), params={"fieldManager": "creator"}).json()
    mine = entry(created, "creator", "Update")
    assert "f:progressDeadlineSeconds" in mine["fieldsV1"]["f:spec"]  # defaults count as written by the creator
    status = api.patch(f"{DEPLOYMENTS}/web/status", {"status": {"replicas": 1}},
                       params={"fieldManager": "controller"}).json()
    controller = entry(status, "controller", "Update")
    assert controller["subresource"] == "status" and controller["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_status_apply_owns_status_fields_only(api: Any, m: Any) -> None:
    apply(api, m.deployment())
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"observedGeneration": 1}}
    answer = apply(api, body, manager="controller", path=f"{DEPLOYMENTS}/web/status")
    assert answer.status_code == 200
    assert answer.json()["status"] == {"observedGeneration": 1}
    assert entry(answer.json(), "controller")["subresource"] == "status"


def test_apply_to_a_custom_resource(api: Any, m: Any) -> None:
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", m.crd())
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    path = "/apis/example.com/v1/namespaces/default/widgets/w"
    assert apply(api, widget, path=path).status_code == 201
    widget["spec"] = {"colour": "red"}
    updated = apply(api, widget, path=path).json()
    assert updated["spec"] == {"colour": "red"}


@pytest.mark.parametrize("force", [False, True], ids=["conflict", "force-conflicts"])
def test_kubectl_server_side_apply_conflicts_with_kubectl_scale(kube: KubeSandbox, kubectl: Any, m: Any,
                                                                force: bool) -> None:
    manifest = yaml.safe_dump({**m.deployment(), "metadata": {"name": "web", "namespace": "default"}})
    assert kubectl("apply", "--server-side", "-f", "-", stdin=manifest).returncode == 0
    assert kubectl("scale", "deployment/web", "--replicas=3").returncode == 0
    with_replicas = yaml.safe_dump({**m.deployment(replicas=2), "metadata": {"name": "web", "namespace": "default"}})
    args = ["apply", "--server-side", *(["--force-conflicts"] if force else []), "-f", "-"]
    result = kubectl(*args, stdin=with_replicas)
    if force:
        assert result.returncode == 0, result.stderr
        assert kubectl("diff", "--server-side", "-f", "-", stdin=with_replicas).returncode == 0
    else:
        assert result.returncode == 1
        assert ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: '
                ".spec.replicas") in result.stderr
