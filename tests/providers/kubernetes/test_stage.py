"""Stories of the workloads stage against the emulator over real HTTPS."""

from __future__ import annotations

import copy
import queue
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from providers.kubernetes import inventory as inv
from providers.kubernetes.client import KubeClient, RetryPolicy
from providers.kubernetes.schema import PlainManifest
from providers.kubernetes.stage import KubernetesStage, StageError, WorkloadsInputs
from providers.kubernetes.watch import DriftEvent
from providers.stage import Action, Outcome, StageContext, StalePlan
from repo_schema.issues import Location
from sandbox.kube import KubeSandbox
from tests.providers.kubernetes.conftest import workloads_inputs

KUBECTL = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "kubectl"


def context(kubeconfig: Path, tmp_path: Path, environment: str, manifests: dict[str, list[Any]],
            workloads: list[dict[str, Any]], inventory: Any = None,
            **spec: Any) -> StageContext[WorkloadsInputs]:
    return StageContext(environment, "rev", tmp_path, tmp_path,
                        spec=workloads_inputs({"workloads": workloads, **spec}, manifests, inventory),
                        credentials={"kubeconfig": kubeconfig.read_text()})


def example_context(state: Any, spec: dict[str, Any], kubeconfig: Path,
                    tmp_path: Path) -> StageContext[WorkloadsInputs]:
    manifests = {name: list(rendered.manifests) for name, rendered in state.workloads.items()}
    return StageContext(state.environment, "rev", tmp_path, tmp_path, spec=workloads_inputs(spec, manifests),
                        credentials={"kubeconfig": kubeconfig.read_text()})


def real_writes(kube: KubeSandbox) -> list[dict[str, Any]]:
    return [w for w in kube.writes() if not w["dry_run"]]


def plain(body: dict[str, Any], line: int = 1) -> PlainManifest:
    return PlainManifest(body, Location("apps/demo/all.yaml", line))


def cm(name: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


@pytest.mark.integration  # runs the real kubectl
@pytest.mark.parametrize("environment", ["staging", "production"])
def test_sync_example_then_kubectl_diff_is_clean_and_second_sync_writes_nothing(
        environment: str, example_states: dict[str, Any], example_specs: dict[str, Any], kube: KubeSandbox,
        kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = example_context(example_states[environment], example_specs[environment], kubeconfig, tmp_path)
    plan = stage.plan(ctx)
    assert {c.action for c in plan.changes} == {Action.create}
    assert "apiextensions.k8s.io/CustomResourceDefinition//backuppolicies.platform.example.test" in \
        [c.address for c in plan.changes]
    result = stage.apply(ctx, plan)
    assert result.succeeded, result.error
    assert set(result.outcomes.values()) == {Outcome.created}
    assert set(result.outputs["inventory"]) == {"platform", "web", "worker", "settings"}

    stream = "---\n".join(yaml.safe_dump(m.body) for m in example_states[environment].manifests())
    # as field manager tidegate, the bodies the stage applied: the rendered ones lack the tracking labels,
    # and an apply of them by their owner would remove those labels
    applied = "---\n".join(yaml.safe_dump(o["body"]) for o in plan.details["objects"])
    for mode, text in (([], stream), (["--server-side"], stream),
                       (["--server-side", "--field-manager", "tidegate"], applied)):
        diff = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"),
                               "diff", *mode, "-n", "web", "-f", "-"],
                              input=text, capture_output=True, text=True, timeout=60)
        assert diff.returncode == 0, diff.stdout + diff.stderr

    kube.clear_requests()
    again = stage.plan(ctx)
    assert not again.has_changes, [c.diff for c in again.changes if c.action is not Action.no_op]
    second = stage.apply(ctx, again)
    assert second.succeeded and set(second.outcomes.values()) == {Outcome.unchanged}
    assert real_writes(kube) == []
    # a fresh Tidegate recovers the inventory from the cluster
    assert inv.to_json(inv.read(stage_client(kubeconfig), environment)) == second.outputs["inventory"]


def stage_client(kubeconfig: Path) -> Any:
    from providers.kubernetes.client import KubeClient

    return KubeClient.connect(path=kubeconfig)


def test_removing_a_manifest_prunes_it_and_nothing_else_and_prune_disabled_stays(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    workloads = [{"name": "demo", "namespace": "default"}]
    full = [plain(cm("a")), plain(cm("b")), plain(cm("keep", **{"tidegate.dev/prune": "disabled"}))]
    first = stage.apply(ctx := context(kubeconfig, tmp_path, "dev", {"demo": full}, workloads),
                        stage.plan(ctx))
    assert first.succeeded, first.error
    stage_client(kubeconfig).apply({**cm("unowned"), "metadata": {"name": "unowned", "namespace": "default"}})

    smaller = context(kubeconfig, tmp_path, "dev", {"demo": full[:1]}, workloads, inventory=first.outputs["inventory"])
    plan = stage.plan(smaller)
    actions = {c.address: c.action for c in plan.changes}
    assert actions == {"/ConfigMap/default/a": Action.no_op, "/ConfigMap/default/b": Action.delete}
    kube.clear_requests()
    result = stage.apply(smaller, plan)
    assert result.succeeded, result.error
    assert result.outcomes == {"/ConfigMap/default/a": Outcome.unchanged, "/ConfigMap/default/b": Outcome.deleted}
    deletes = [w for w in real_writes(kube) if w["verb"] == "delete"]
    assert [d["name"] for d in deletes] == ["b"]
    client = stage_client(kubeconfig)
    assert client.get("v1", "ConfigMap", "keep", "default") is not None
    assert client.get("v1", "ConfigMap", "unowned", "default") is not None
    assert result.outputs["inventory"] == {"demo": [{"group": "", "kind": "ConfigMap", "namespace": "default",
                                                     "name": "a", "version": "v1"}]}


def test_a_manifest_the_api_rejects_writes_nothing_and_names_file_line_and_field(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "Sideways", "ports": [{"port": 80}]}}
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"), 1), plain(bad, 7)]},
                  [{"name": "demo", "namespace": "default"}])
    with pytest.raises(StageError) as caught:
        KubernetesStage().plan(ctx)
    assert "apps/demo/all.yaml:7: Service default/web: field spec.type" in str(caught.value)
    assert real_writes(kube) == []


def test_objects_in_a_namespace_created_by_the_sync_are_validated_offline_before_any_write(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}
    bad = {**cm("a"), "metadata": {"name": "a", "namespace": "fresh"}, "data": {"k": 3}}
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(namespace, 1), plain(bad, 5)]},
                  [{"name": "demo", "namespace": "default"}])
    with pytest.raises(StageError, match=r"apps/demo/all\.yaml:5"):
        KubernetesStage().plan(ctx)
    assert real_writes(kube) == []


def test_retries_500_and_429_and_the_sync_succeeds(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    sleeps: list[float] = []  # backoff recorded instead of slept; Retry-After is honoured
    stage = KubernetesStage(connect=lambda _: KubeClient.connect(path=kubeconfig,
                                                                 retry=RetryPolicy(sleep=sleeps.append)))
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo", "namespace": "default"}])
    plan = stage.plan(ctx)
    kube.inject(status=500, verb="patch", times=2)
    kube.inject(status=429, retry_after=2, verb="get", times=2)
    result = stage.apply(ctx, plan)
    assert result.succeeded, result.error
    assert result.outcomes == {"/ConfigMap/default/a": Outcome.created}
    assert len(sleeps) == 4 and sleeps.count(2.0) == 2


def test_a_permanent_403_fails_clearly(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo", "namespace": "default"}])
    plan = stage.plan(ctx)
    kube.inject(status=403, verb="patch")
    result = stage.apply(ctx, plan)
    assert not result.succeeded and "permission denied (403)" in (result.error or "")
    # the plan's dry run validated the object; the one write is refused and never retried
    assert len(real_writes(kube)) == 1
    assert stage_client(kubeconfig).get("v1", "ConfigMap", "a", "default") is None


def test_conflicts_are_reported_and_forced_only_with_force_conflicts(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    client = stage_client(kubeconfig)
    client.resource("v1", "ConfigMap").create(body=cm("a"), namespace="default")  # another manager owns data.k
    desired = {**cm("a"), "data": {"k": "ours"}}
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(desired)]}, [{"name": "demo", "namespace": "default"}])
    result = stage.apply(ctx, stage.plan(ctx))
    assert not result.succeeded and "conflict" in (result.error or "") and "forceConflicts" in (result.error or "")
    forced = context(kubeconfig, tmp_path, "dev", {"demo": [plain(desired)]},
                     [{"name": "demo", "namespace": "default", "forceConflicts": True}])
    result = stage.apply(forced, stage.plan(forced))
    assert result.succeeded, result.error
    live = client.get("v1", "ConfigMap", "a", "default")
    assert live is not None and live["data"] == {"k": "ours"}


def test_a_plan_binds_no_resource_versions_so_a_status_write_leaves_its_approval_standing(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo", "namespace": "default"}])
    stage_client(kubeconfig).apply({**cm("a"), "metadata": {"name": "a", "namespace": "default"}})
    first = stage.plan(ctx)
    touched = httpx.patch(f"{kube.url}/api/v1/namespaces/default/configmaps/a?fieldManager=a-controller",
                          json={"metadata": {"annotations": {"touched": "by-a-controller"}}}, verify=str(kube.ca_file),
                          headers={"Authorization": f"Bearer {kube.token}",
                                   "Content-Type": "application/merge-patch+json"})
    assert touched.status_code == 200, touched.text
    second = stage.plan(ctx)

    assert first.live_state == second.live_state == ""
    assert first.details["live_versions"] != second.details["live_versions"]


def test_a_stale_plan_is_refused(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo", "namespace": "default"}])
    plan = stage.plan(ctx)
    stage_client(kubeconfig).apply({**cm("a"), "metadata": {"name": "a", "namespace": "default"}})
    with pytest.raises(StalePlan, match="the plan is stale"):
        stage.apply(ctx, plan)


def test_crd_and_its_custom_resource_apply_in_one_sync(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}
    # the CR comes first in the source: kind order puts the CRD before it
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(widget, 1), plain(crd, 9)]},
                  [{"name": "demo", "namespace": "default"}])
    stage = KubernetesStage()
    plan = stage.plan(ctx)
    assert [c.address for c in plan.changes] == [
        "apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com", "example.com/Widget/default/w"]
    assert "is created by this sync" in plan.changes[1].diff
    kube.clear_requests()
    result = stage.apply(ctx, plan)
    assert result.succeeded, result.error
    assert set(result.outcomes.values()) == {Outcome.created}
    # the emulator establishes a CRD 0.3 s after its creation, as a real server does after a moment:
    # the custom resource is written only once it is served
    writes = {w["resource"]: w["time"] for w in real_writes(kube)}
    assert writes["widgets"] - writes["customresourcedefinitions"] >= 0.3
    live = stage_client(kubeconfig).get("example.com/v1", "Widget", "w", "default")
    assert live is not None and live["spec"] == {"size": 3}
    assert not stage.plan(ctx).has_changes


def test_out_of_band_change_is_drift_through_the_same_comparison(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "hunter2"}}
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(deploy), plain(secret)]},
                  [{"name": "demo", "namespace": "default"}])
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    assert stage.observe(ctx) == []
    client = stage_client(kubeconfig)
    client.resource("apps/v1", "Deployment").patch(name="web", namespace="default", body={"spec": {"replicas": 5}},
                                                   content_type="application/merge-patch+json")
    client.resource("v1", "Secret").patch(name="s", namespace="default", body={"stringData": {"token": "leaked"}},
                                          content_type="application/merge-patch+json")
    drift = {(item.address, item.field): item for item in stage.observe(ctx)}
    assert set(drift) == {("apps/Deployment/default/web", "/spec/replicas"), ("/Secret/default/s", "/data/token")}
    scaled = drift[("apps/Deployment/default/web", "/spec/replicas")]
    assert (scaled.desired, scaled.live) == (2, 5)
    assert "hunter2" not in str(drift) and "leaked" not in str(drift)
    # the plan shows the same two objects as updates; the hand edits made other managers own the
    # fields, so healing them is a conflict unless the workload says forceConflicts
    plan = stage.plan(ctx)
    assert {c.address for c in plan.changes if c.action is Action.update} == {
        "apps/Deployment/default/web", "/Secret/default/s"}
    assert "# conflict" in next(c.diff for c in plan.changes if c.address == "apps/Deployment/default/web")
    refused = stage.apply(ctx, plan)
    assert not refused.succeeded and "forceConflicts" in (refused.error or "")
    forced = context(kubeconfig, tmp_path, "dev", {"demo": [plain(deploy), plain(secret)]},
                     [{"name": "demo", "namespace": "default", "forceConflicts": True}])
    healed = stage.apply(forced, stage.plan(forced))
    assert healed.succeeded, healed.error
    assert stage.observe(ctx) == []


def test_prune_walks_reverse_kind_order_and_a_removed_workload_loses_its_inventory(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}
    config = {**cm("c"), "metadata": {"name": "c", "namespace": "gone"}}
    first_ctx = context(kubeconfig, tmp_path, "dev",
                        {"old": [plain(namespace), plain(config)], "demo": [plain(cm("a"))]},
                        [{"name": "old"}, {"name": "demo"}])
    first = stage.apply(first_ctx, stage.plan(first_ctx))
    assert first.succeeded, first.error
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo"}])
    plan = stage.plan(ctx)  # inventory read back from the cluster
    assert [c.address for c in plan.changes if c.action is Action.delete] == [
        "/ConfigMap/gone/c", "/Namespace//gone"]
    result = stage.apply(ctx, plan)
    assert result.succeeded, result.error
    assert set(result.outputs["inventory"]) == {"demo"}
    assert set(inv.read(stage_client(kubeconfig), "dev")) == {"demo"}


def test_apply_waits_for_health_and_fails_fast_on_a_degraded_rollout(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    def deployment(name: str, fail: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if fail:
            meta["annotations"] = {"sandbox.tidegate.dev/fail": "true"}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]}}}}

    stage = KubernetesStage()
    ok = StageContext("dev", "rev", tmp_path, tmp_path,
                      spec=workloads_inputs({"workloads": [{"name": "web"}]},
                                            {"web": [plain(deployment("web", False))]}),
                      settings={"kubeconfig_path": str(kubeconfig), "wait_timeout": 20})
    result = stage.apply(ok, stage.plan(ok))
    assert result.succeeded, result.error
    assert result.outputs["health"] == {"environment": "Healthy", "workloads": {"web": "Healthy"}}
    failing = StageContext("dev", "rev", tmp_path, tmp_path,
                           spec=workloads_inputs({"workloads": [{"name": "web"}]},
                                                 {"web": [plain(deployment("web", False)),
                                                          plain(deployment("bad", True))]}),
                           settings={"kubeconfig_path": str(kubeconfig), "wait_timeout": 20})
    result = stage.apply(failing, stage.plan(failing))
    assert not result.succeeded and "ProgressDeadlineExceeded" in (result.error or "")
    assert result.outputs["health"]["workloads"] == {"web": "Degraded"}


def test_an_unconfirmed_deletion_stays_in_the_inventory_until_it_is_gone(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    held = {**cm("held"), "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    first_ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a")), plain(held)]}, [{"name": "demo"}])
    assert stage.apply(first_ctx, stage.plan(first_ctx)).succeeded
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo"}])
    result = stage.apply(ctx, stage.plan(ctx))
    assert result.succeeded and result.outcomes["/ConfigMap/default/held"] is Outcome.deleted
    assert [r["name"] for r in result.outputs["inventory"]["demo"]] == ["a", "held"]  # terminating, not gone
    client = stage_client(kubeconfig)
    client.resource("v1", "ConfigMap").patch(name="held", namespace="default", body={"metadata": {"finalizers": None}},
                                             content_type="application/merge-patch+json")
    final = stage.apply(ctx, stage.plan(ctx))
    assert final.succeeded and [r["name"] for r in final.outputs["inventory"]["demo"]] == ["a"]


def kubectl(kubeconfig: Path, tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.integration  # runs the real kubectl
def test_an_edited_manifest_makes_kubectl_diff_exit_1_naming_the_field(
        example_states: dict[str, Any], example_specs: dict[str, Any], kube: KubeSandbox, kubeconfig: Path,
        tmp_path: Path) -> None:
    state = example_states["staging"]
    stage = KubernetesStage()
    ctx = example_context(state, example_specs["staging"], kubeconfig, tmp_path)
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    bodies = [copy.deepcopy(m.body) for m in state.manifests()]
    config = next(b for b in bodies if b["kind"] == "ConfigMap" and b["metadata"]["name"] == "web-config")
    key = sorted(config["data"])[0]
    config["data"][key] = "edited-by-hand"
    diff = kubectl(kubeconfig, tmp_path, "diff", "-n", "web", "-f", "-",
                   stdin="---\n".join(yaml.safe_dump(b) for b in bodies))
    assert diff.returncode == 1, diff.stderr
    assert f"+  {key}: edited-by-hand" in diff.stdout


@pytest.mark.integration  # runs the real kubectl
def test_kubectl_scale_is_drift_through_the_watch_also_after_a_410_and_correction_leaves_zero_writes(
        example_states: dict[str, Any], example_specs: dict[str, Any], kube: KubeSandbox, kubeconfig: Path,
        tmp_path: Path) -> None:
    state = example_states["staging"]
    spec = copy.deepcopy(example_specs["staging"])
    stage = KubernetesStage()
    ctx = example_context(state, spec, kubeconfig, tmp_path)
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    events: queue.Queue[DriftEvent] = queue.Queue()
    kube.clear_requests()
    watcher = stage.watch(ctx, events.put)
    try:
        time.sleep(0.3)  # controllers settle status (not drift)
        changed_at = time.time()
        scaled = kubectl(kubeconfig, tmp_path, "scale", "-n", "web", "deployment/web", "--replicas=7")
        assert scaled.returncode == 0, scaled.stderr
        event = events.get(timeout=5)
        assert (event.address, event.fields) == ("apps/Deployment/web/web", ("/spec/replicas",))
        ours = [r for r in kube.requests() if not r["user_agent"].startswith("kubectl")]
        assert any(r["verb"] == "watch" and r["resource"] == "deployments" for r in ours)
        polled = [r for r in ours if r["verb"] in ("get", "list") and r["time"] >= changed_at]
        assert polled == []  # the event came from the open watch, not from polling
        # a change made while the watch is down, after the history is compacted: 410 → re-list → resync
        kube.inject(status=503, verb="watch")
        kube.drop_watches()
        time.sleep(0.2)
        edited = kubectl(kubeconfig, tmp_path, "patch", "-n", "web", "configmap/web-config", "--type=merge",
                         "-p", '{"data": {"hand": "edit"}}')
        assert edited.returncode == 0, edited.stderr
        kube.compact()
        kube.clear_faults()
        event = events.get(timeout=5)
        assert (event.address, event.reason, event.fields) == ("/ConfigMap/web/web-config", "resync", ("/data/hand",))
        assert watcher.resyncs >= 1
    finally:
        watcher.stop()
    # the same comparison names the field; correcting takes the field back (forceConflicts), then nothing
    drift = {(d.address, d.field) for d in stage.observe(ctx)}
    assert ("apps/Deployment/web/web", "/spec/replicas") in drift
    for workload in spec["workloads"]:
        workload["forceConflicts"] = True
    forced = example_context(state, spec, kubeconfig, tmp_path)
    assert stage.apply(forced, stage.plan(forced)).succeeded
    assert ("apps/Deployment/web/web", "/spec/replicas") not in {(d.address, d.field) for d in stage.observe(ctx)}
    kube.clear_requests()
    again = stage.apply(forced, stage.plan(forced))
    assert again.succeeded and set(again.outcomes.values()) == {Outcome.unchanged}
    assert real_writes(kube) == []


def test_prune_off_for_the_environment_deletes_nothing(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    first_ctx = context(kubeconfig, tmp_path, "dev", {"old": [plain(cm("b"))], "demo": [plain(cm("a"))]},
                        [{"name": "old"}, {"name": "demo"}], sync={"prune": False})
    assert stage.apply(first_ctx, stage.plan(first_ctx)).succeeded
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo"}], sync={"prune": False})
    plan = stage.plan(ctx)
    assert not plan.has_changes and plan.details["kept"][0]["name"] == "b"
    assert stage.apply(ctx, plan).succeeded
    assert stage_client(kubeconfig).get("v1", "ConfigMap", "b", "default") is not None


def test_applied_objects_carry_tracking_labels_and_the_watch_selects_by_them(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(cm("a"))]}, [{"name": "demo"}])
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    client = stage_client(kubeconfig)
    live = client.get("v1", "ConfigMap", "a", "default")
    assert live is not None and live["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "tidegate", "tidegate.dev/environment": "dev", "tidegate.dev/workload": "demo"}
    client.resource("v1", "ConfigMap").create(body=cm("stranger"), namespace="default")  # not ours
    events: queue.Queue[DriftEvent] = queue.Queue()
    kube.clear_requests()
    watcher = stage.watch(ctx, events.put)
    try:
        client.resource("v1", "ConfigMap").patch(name="stranger", namespace="default", body={"data": {"k": "x"}},
                                                 content_type="application/merge-patch+json")
        client.resource("v1", "ConfigMap").patch(name="a", namespace="default", body={"data": {"k": "hand"}},
                                                 content_type="application/merge-patch+json")
        event = events.get(timeout=5)
        assert (event.address, event.fields) == ("/ConfigMap/default/a", ("/data/k",))
    finally:
        watcher.stop()
    selector = "app.kubernetes.io/managed-by=tidegate,tidegate.dev/environment=dev"
    asked = [r for r in kube.requests() if r["resource"] == "configmaps" and r["verb"] in ("list", "watch")
             and r["user_agent"] != "kubectl"]
    assert asked and all(r["query"].get("labelSelector") == selector for r in asked)
    # an object that lost its labels by hand: an update that relabels it, never drift
    client.resource("v1", "ConfigMap").patch(name="a", namespace="default", body={"data": {"k": "a"}, "metadata": {
        "labels": {"tidegate.dev/workload": None}}}, content_type="application/merge-patch+json")
    plan = stage.plan(ctx)
    assert [(c.action, c.diff.partition("\n")[0]) for c in plan.changes] == [
        (Action.update, "# adds Tidegate's tracking labels: tidegate.dev/workload")]
    assert stage.observe(ctx) == []
    assert stage.apply(ctx, plan).succeeded
    assert not stage.plan(ctx).has_changes
    client.close()


def _deployment(selector: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": selector}},
                     "template": {"metadata": {"labels": {"app": selector}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


def test_an_immutable_field_change_is_refused_unless_the_manifest_opts_in_to_replace(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(_deployment("web"))]}, [{"name": "demo"}])
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    old_uid = stage_client(kubeconfig).get("apps/v1", "Deployment", "web", "default")["metadata"]["uid"]
    moved = context(kubeconfig, tmp_path, "dev", {"demo": [plain(_deployment("web-v2"), 7)]}, [{"name": "demo"}])
    with pytest.raises(StageError) as refused:
        stage.plan(moved)
    assert refused.value.errors == [
        'apps/demo/all.yaml:7: Deployment default/web: Deployment.apps "web" is invalid: spec.selector: Invalid value: '
        'v1.LabelSelector{MatchLabels:map[string]string{"app":"web-v2"}, MatchExpressions:[]v1.LabelSelectorRequirement'
        '(nil)}: field is immutable (set the annotation tidegate.dev/replace: enabled on this manifest to delete and '
        'recreate it)']
    opted = context(kubeconfig, tmp_path, "dev", {"demo": [plain(_deployment("web-v2", **{
        "tidegate.dev/replace": "enabled"}))]}, [{"name": "demo"}])
    plan = stage.plan(opted)
    [change] = plan.changes
    assert (change.action, plan.summary()) == (Action.replace, "+1 ~0 -1")
    assert change.diff.startswith("# replace (delete, then create): Deployment.apps \"web\" is invalid: spec.selector")
    assert "-      app: web\n" in change.diff and "+      app: web-v2\n" in change.diff
    assert "progressDeadlineSeconds" not in change.diff  # only the fields the manifest writes
    kube.clear_requests()
    result = stage.apply(opted, plan)
    assert result.succeeded, result.error
    assert result.outcomes == {"apps/Deployment/default/web": Outcome.created}
    live = stage_client(kubeconfig).get("apps/v1", "Deployment", "web", "default")
    assert live["metadata"]["uid"] != old_uid and live["spec"]["selector"] == {"matchLabels": {"app": "web-v2"}}
    writes = [(w["verb"], w["query"].get("propagationPolicy")) for w in real_writes(kube)
              if w["resource"] == "deployments"]
    assert writes == [("delete", "Foreground"), ("patch", None)]  # deleted, gone, then created
    assert not stage.plan(opted).has_changes


def test_kinds_safe_to_replace_are_replaced_without_asking(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    """An immutable ConfigMap's new data, and a finished Job's new template."""
    frozen = {**cm("frozen"), "immutable": True}
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "m", "image": "migrate:1"}]}}}}
    stage = KubernetesStage()
    ctx = context(kubeconfig, tmp_path, "dev", {"demo": [plain(frozen), plain(job)]}, [{"name": "demo"}],)
    assert stage.apply(ctx, stage.plan(ctx)).succeeded
    client = stage_client(kubeconfig)
    deadline = time.monotonic() + 5
    while (client.get("batch/v1", "Job", "migrate", "default") or {}).get("status", {}).get("succeeded") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job2 = copy.deepcopy(job)
    job2["spec"]["template"]["spec"]["containers"][0]["image"] = "migrate:2"
    changed = context(kubeconfig, tmp_path, "dev", {"demo": [plain({**frozen, "data": {"k": "new"}}), plain(job2)]},
                      [{"name": "demo"}])
    plan = stage.plan(changed)
    assert [(c.address, c.action) for c in plan.changes] == [
        ("/ConfigMap/default/frozen", Action.replace), ("batch/Job/default/migrate", Action.replace)]
    result = stage.apply(changed, plan)
    assert result.succeeded, result.error
    assert client.get("v1", "ConfigMap", "frozen", "default")["data"] == {"k": "new"}
    assert client.get("batch/v1", "Job", "migrate", "default")["spec"]["template"]["spec"]["containers"][0][
        "image"] == "migrate:2"
    client.close()
