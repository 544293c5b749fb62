"""Progress people can watch: the stage, step and counts of a running sync, a heartbeat when nothing
changes on a plain terminal, and the one sentence per environment `up` ends with."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from rich.console import Console

from reconciler.runtime import Services
from store import StageStatus, SyncLifecycle, SyncStageResult
from tidegate.client import Client, EnvironmentView, LocalClient, StageView, SyncView
from tidegate.http_client import HttpClient
from tidegate.progress import progress_of, watch_sync
from tidegate.up import sentences

PLAN = {"infrastructure": {"changes": [{"address": f"aws_instance.node[{n}]"} for n in range(3)]},
        "workloads": {"changes": [{"address": f"apps/Deployment/web/w{n}"} for n in range(4)]}}
TF_LOG = ("aws_instance.node[0]: Creating...\naws_instance.node[0]: Creation complete after 2s [id=i-1]\n"
          "aws_instance.node[1]: Modifications complete after 1s [id=i-2]\naws_instance.node[2]: Creating...\n")


def sync_view(status: str, *stages: StageView) -> SyncView:
    return SyncView(3, "staging", "abc1234", "poll", status, datetime.now(UTC), None, None, None, PLAN, list(stages))


@pytest.mark.parametrize("view,state", [
    pytest.param(sync_view("pending"), "sync #3 pending (queued)", id="queued"),
    pytest.param(sync_view("planning"), "sync #3 planning (plan)", id="planning"),
    pytest.param(sync_view("applying", StageView("infrastructure", "applying", {}, None, TF_LOG)),
                 "sync #3 applying infrastructure (apply): 2/3 resources", id="terraform-resources-done"),
    pytest.param(sync_view("applying", StageView("infrastructure", "succeeded", {}, 9.0),
                           StageView("workloads", "applying", {}, None)),
                 "sync #3 applying workloads (apply and health): 4 objects planned", id="workloads-planned"),
    pytest.param(sync_view("applying", StageView("workloads", "applying",
                                                 {"progress": {"done": 3, "total": 7, "unit": "objects"}}, None)),
                 "sync #3 applying workloads (apply and health): 3/7 objects", id="kubernetes-objects-applied"),
    pytest.param(sync_view("applying", StageView("configuration", "applying",
                                                 {"progress": {"done": 1, "total": 2, "unit": "hosts"}}, None)),
                 "sync #3 applying configuration (apply): 1/2 hosts", id="ansible-hosts-done"),
])
def test_a_syncs_state_names_its_stage_step_and_counts(view: SyncView, state: str) -> None:
    assert progress_of(view).state() == state


class Replay:
    """A client whose sync goes through the given views, one per look (the last one stays)."""

    def __init__(self, *views: SyncView) -> None:
        self.views = list(views)

    def show_sync(self, sync_id: int) -> SyncView:
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]


def test_a_plain_watcher_prints_each_change_and_a_heartbeat_when_nothing_changes() -> None:
    applying = sync_view("applying", StageView("infrastructure", "applying", {}, None, ""))
    done = replace(applying, status="succeeded", stages=[StageView("infrastructure", "succeeded", {}, 3.0)])
    plain = io.StringIO()
    view = watch_sync(Replay(sync_view("planning"), *[applying] * 4, done), 3, timeout=10,  # type: ignore[arg-type]
                      console=Console(file=plain, width=200), period=0.01, heartbeat=0.0)
    assert view is not None and view.status == "succeeded"
    lines = [line.rsplit(",", 1)[0] for line in plain.getvalue().splitlines()]
    assert lines[:3] == ["sync #3 planning (plan)", "sync #3 applying infrastructure (apply): 0/3 resources",
                         "sync #3 applying infrastructure (apply): 0/3 resources"]
    assert plain.getvalue().splitlines()[2].endswith("(still running)")
    assert lines[-1] == "sync #3 succeeded (done)"


def env(name: str, status: str, health: str, last: int | None, last_status: str | None, message: str = "",
        revision: str | None = "abc1234def") -> EnvironmentView:
    return EnvironmentView("infra", name, revision, status, health, False, 0, last, last_status, message)


@pytest.mark.parametrize("view,sentence", [
    pytest.param(env("production", "AwaitingApproval", "Healthy", 2, "awaiting_approval"),
                 "production waits for approval of sync #2: `tidegate approve 2`", id="awaiting-approval"),
    pytest.param(env("staging", "Synced", "Healthy", 1, "succeeded"), "staging is Synced and Healthy at abc1234",
                 id="synced"),
    pytest.param(env("staging", "OutOfSync", "Degraded", 3, "failed", "workloads: web did not become ready"),
                 "staging's sync #3 failed: workloads: web did not become ready", id="failed"),
    pytest.param(env("staging", "Unknown", "Unknown", None, None, revision=None), "staging has not synced yet",
                 id="never-synced"),
])
def test_up_ends_with_one_true_sentence_per_environment(view: EnvironmentView, sentence: str) -> None:
    assert sentences([view]) == [sentence]


def test_a_running_stages_count_reads_the_same_in_process_and_over_the_api(
        logged_sync: tuple[Services, int], local_client: LocalClient, http_client: HttpClient) -> None:
    """The count a stage reported (kept in its result's summary by the live log) reaches a watcher
    through either client."""
    services, sync_id = logged_sync
    with services.database.session() as session:
        row = session.query(SyncStageResult).filter_by(sync_id=sync_id, stage="workloads").one()
        row.status, row.finished_at, row.summary = StageStatus.APPLYING, None, {
            "progress": {"done": 12, "total": 40, "unit": "objects"}}
        row.sync.status = SyncLifecycle.APPLYING
    clients: list[Client] = [local_client, http_client]
    assert [progress_of(client.show_sync(sync_id)).state() for client in clients] == [
        f"sync #{sync_id} applying workloads (apply and health): 12/40 objects"] * 2
