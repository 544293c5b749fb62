"""Stories of the stage's memory and snapshot: a sync costs what changed, not the environment.

Every plan reads the live objects with one label-selected LIST per kind; an object whose desired
body and live state are what the last apply sent and left is unchanged without a request; anything
else is dry-run as before, so a change made by hand is never missed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import memory
from providers.kubernetes.client import KubeClient
from providers.kubernetes.stage import KubernetesStage, WorkloadsInputs
from providers.kubernetes.watch import DriftEvent
from providers.stage import Action, Outcome, StageContext, StagePlan, StalePlan
from sandbox.kube import KubeSandbox
from tests.providers.kubernetes.test_stage import context, plain

OBJECTS = 6


def configmap(index: int, value: str = "v1") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{index}"}, "data": {"k": value}}


def deployment() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


def desired(value: str = "v1") -> list[dict[str, Any]]:
    return [configmap(index, value if index == 0 else "v1") for index in range(OBJECTS)] + [deployment()]


def ctx(kubeconfig: Path, tmp_path: Path, bodies: list[dict[str, Any]],
        recorded: Mapping[str, Any] | None = None, workload: Mapping[str, Any] | None = None,
        ) -> StageContext[WorkloadsInputs]:
    """The stage's context as the reconciler builds it: the recorded inventory and memory (the
    last apply's outputs) when there are any."""
    recorded = recorded or {}
    base = context(kubeconfig, tmp_path, "dev", {"demo": [plain(b, i + 1) for i, b in enumerate(bodies)]},
                   [{"name": "demo", "namespace": "default", **(workload or {})}], recorded.get("inventory"))
    return dataclasses.replace(base, spec=dataclasses.replace(
        base.spec, memory=memory.from_json(recorded.get("applied"))))


def synced(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> tuple[KubernetesStage, dict[str, Any]]:
    """The environment applied once and its Deployment ready (the controller has written its
    status); the apply's recorded outputs."""
    stage = KubernetesStage()
    first = ctx(kubeconfig, tmp_path, desired())
    result = stage.apply(first, stage.plan(first))
    assert result.succeeded, result.error
    client = KubeClient.connect(path=kubeconfig)
    deadline = time.monotonic() + 30
    while ((client.get("apps/v1", "Deployment", "web", "default") or {}).get("status") or {}).get(
            "readyReplicas") != 1:
        assert time.monotonic() < deadline, "the emulator's controller never made the Deployment ready"
        time.sleep(0.05)
    client.close()
    kube.clear_requests()
    return stage, result.outputs


def per_object(kube: KubeSandbox) -> list[dict[str, Any]]:
    """Requests naming one object (GETs, dry runs, writes): what the snapshot and memory avoid."""
    return [r for r in kube.requests(include_discovery=False) if r["name"] and r["resource"] != "namespaces"]


def dry_runs(kube: KubeSandbox) -> list[str]:
    return [r["name"] for r in kube.requests(verb="patch") if r["dry_run"]]


def actions(plan: StagePlan) -> dict[str, Action]:
    return {change.address: change.action for change in plan.changes}


def test_an_unchanged_environment_plans_without_a_request_per_object(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    assert len(remembered["applied"]) == OBJECTS + 1

    plan = stage.plan(ctx(kubeconfig, tmp_path, desired(), remembered))

    assert set(actions(plan).values()) == {Action.no_op}
    assert per_object(kube) == []
    # the namespaces (are they there?), and the live objects of each kind
    assert sorted(r["resource"] for r in kube.requests(verb="list")) == ["configmaps", "deployments", "namespaces"]


def test_a_status_write_by_a_controller_does_not_cost_a_dry_run(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path, client: KubeClient) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    live = client.get("apps/v1", "Deployment", "web", "default")
    assert live is not None and (live.get("status") or {}).get("readyReplicas") == 1  # the controller wrote it
    assert live["metadata"]["resourceVersion"] != remembered["applied"] and kube.requests(verb="patch") == []

    plan = stage.plan(ctx(kubeconfig, tmp_path, desired(), remembered))

    assert actions(plan)["apps/Deployment/default/web"] is Action.no_op
    assert dry_runs(kube) == []


def test_an_object_changed_by_hand_is_seen_and_dry_run_alone(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path, client: KubeClient) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    client.resource("v1", "ConfigMap").patch(name="cm-3", namespace="default", body={"data": {"k": "by hand"}},
                                             content_type="application/merge-patch+json")
    kube.clear_requests()

    plan = stage.plan(ctx(kubeconfig, tmp_path, desired(), remembered))

    assert actions(plan)["/ConfigMap/default/cm-3"] is Action.update
    assert [a for a in actions(plan).values() if a is not Action.no_op] == [Action.update]
    assert set(dry_runs(kube)) == {"cm-3"}  # twice: without force (a conflict: cm-3's data is theirs now), with


def test_a_changed_manifest_is_dry_run_alone_and_applied(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path, client: KubeClient) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    changed = ctx(kubeconfig, tmp_path, desired("v2"), remembered)

    plan = stage.plan(changed)
    assert dry_runs(kube) == ["cm-0"]
    kube.clear_requests()
    result = stage.apply(changed, plan)

    assert result.succeeded, result.error
    assert result.outcomes["/ConfigMap/default/cm-0"] is Outcome.configured
    assert dry_runs(kube) == []  # the plan's dry run stands: the live object is as it saw it
    assert [r["name"] for r in kube.writes()] == ["cm-0"]  # the inventory is unchanged, so not written
    assert (client.get("v1", "ConfigMap", "cm-0", "default") or {}).get("data") == {"k": "v2"}
    assert result.outputs["applied"]["/ConfigMap/default/cm-0"] != remembered["applied"]["/ConfigMap/default/cm-0"]


def test_a_worker_without_memory_plans_from_lists_and_dry_runs_everything(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage, _ = synced(kube, kubeconfig, tmp_path)

    plan = stage.plan(ctx(kubeconfig, tmp_path, desired()))

    assert set(actions(plan).values()) == {Action.no_op}
    assert sorted(dry_runs(kube)) == sorted([f"cm-{i}" for i in range(OBJECTS)] + ["web"])
    assert [r for r in per_object(kube) if r["verb"] == "get"] == []


@pytest.mark.parametrize("remembered", [True, False], ids=["with-memory", "cold"])
def test_a_change_by_hand_between_plan_and_apply_is_refused_as_stale(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path, client: KubeClient, remembered: bool) -> None:
    stage, recorded = synced(kube, kubeconfig, tmp_path)
    again = ctx(kubeconfig, tmp_path, desired(), recorded if remembered else {"inventory": recorded["inventory"]})
    plan = stage.plan(again)
    client.apply({**configmap(1, "by hand"), "metadata": {"name": "cm-1", "namespace": "default"}})

    with pytest.raises(StalePlan, match="cm-1: planned no-op, now update"):
        stage.apply(again, plan)


def test_memory_is_forgotten_for_an_object_whose_ignore_rules_change(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    rule = {"kind": "ConfigMap", "name": "cm-2", "jsonPointers": ["/data/k"]}

    stage.plan(ctx(kubeconfig, tmp_path, desired(), remembered, {"ignoreDifferences": [rule]}))

    assert dry_runs(kube) == ["cm-2"]


def test_a_watch_that_relists_after_410_still_reports_the_change_and_the_next_plan_sees_it(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path, client: KubeClient) -> None:
    stage, remembered = synced(kube, kubeconfig, tmp_path)
    events: list[DriftEvent] = []
    watcher = stage.watch(ctx(kubeconfig, tmp_path, desired(), remembered), events.append)
    try:
        kube.compact()
        kube.drop_watches()  # the watch resumes from a compacted version: 410, relist, resync
        client.resource("v1", "ConfigMap").patch(name="cm-4", namespace="default",
                                                 body={"data": {"k": "while relisting"}},
                                                 content_type="application/merge-patch+json")
        plan = stage.plan(ctx(kubeconfig, tmp_path, desired(), remembered))
    finally:
        watcher.stop()
    assert actions(plan)["/ConfigMap/default/cm-4"] is Action.update
    assert "cm-4" in dry_runs(kube)


def test_each_write_reaches_the_live_log_as_it_lands(kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    first = dataclasses.replace(ctx(kubeconfig, tmp_path, desired()), on_line=lines.append)
    result = KubernetesStage().apply(first, KubernetesStage().plan(first))
    assert result.succeeded, result.error
    assert sorted(lines) == sorted(line for line in result.log.splitlines() if line.endswith(": created"))
    assert len(lines) == OBJECTS + 1


def test_an_apply_reports_objects_applied_of_those_it_writes_as_each_write_lands(
        kube: KubeSandbox, kubeconfig: Path, tmp_path: Path) -> None:
    """`StageContext.on_progress` counts up from 0 to every object the plan writes, one at a time."""
    counts: list[tuple[int, int, str]] = []
    first = dataclasses.replace(ctx(kubeconfig, tmp_path, desired()),
                                on_progress=lambda done, total, unit: counts.append((done, total, unit)))
    result = KubernetesStage().apply(first, KubernetesStage().plan(first))
    assert result.succeeded, result.error
    assert counts == [(done, OBJECTS + 1, "objects") for done in range(OBJECTS + 2)]
