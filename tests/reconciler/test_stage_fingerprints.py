"""Stage fingerprints: a commit (or a heal) leaves out the stages whose inputs did not change.

The example repo's staging in a real git repository, rendered for real at every commit; the store on
SQLite, Redis for the environment lock; stand-ins for the three providers that record every plan
and apply they are asked for (the providers have their own tests against real Terraform, Ansible
and the API emulator). A bootstrap sync applies all three stages first; each story then commits,
or asks for a sync, and looks at what was run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from providers.stage import Action, Change, DriftItem, Outcome, Stage, StageContext, StagePlan, StageResult
from reconciler import pipeline, syncs
from reconciler.runtime import Services
from reconciler.syncs import L
from reconciler.targets import Connection
from repo_schema.models import ConfigurationSpec
from store import DriftItemRow, DriftReport, Environment, Health, Revision, Sync, SyncTrigger
from tests.reconciler.conftest import EXAMPLE
from tests.support.git_server import commit_and_push

INFRA, CONFIG, WORKLOADS = Stage.INFRASTRUCTURE, Stage.CONFIGURATION, Stage.WORKLOADS
NODES = [{"name": "n1", "address": "198.51.100.1", "groups": ["nodes"]}]


@dataclass
class Calls:
    """Every provider call, in order, and which stages' applies fail."""

    made: list[tuple[str, Stage]] = field(default_factory=list)
    failing: set[Stage] = field(default_factory=set)
    nodes: list[dict[str, Any]] = field(default_factory=lambda: list(NODES))

    def take(self) -> list[tuple[str, Stage]]:
        made, self.made = self.made, []
        return made


class RecordingStage:
    def __init__(self, name: Stage, calls: Calls) -> None:
        self.name = name
        self.calls = calls

    def plan(self, context: StageContext[Any]) -> StagePlan:
        self.calls.made.append(("plan", self.name))
        change = Change(self.name, f"{self.name.value}/thing", Action.update, "~")
        return StagePlan(self.name, [change], digest=f"{self.name.value}-plan")

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult:
        self.calls.made.append(("apply", self.name))
        if self.name in self.calls.failing:
            return StageResult(self.name, {}, succeeded=False, error="the node did not answer")
        outputs: dict[str, Any] = {}
        if self.name is INFRA:
            outputs = {"nodes": self.calls.nodes, "kubeconfig": "apiVersion: v1\nkind: Config\n"}
        if self.name is WORKLOADS:
            outputs = {"inventory": {}}
        return StageResult(self.name, {c.address: Outcome.configured for c in plan.changes}, outputs=outputs)

    def observe(self, context: StageContext[Any]) -> list[DriftItem]:
        return []


class Targets:
    def infrastructure(self, repository: str, environment: str) -> Connection:
        return Connection({"backend_endpoint": "http://198.51.100.7:5000"}, {"AWS_SECRET_ACCESS_KEY": "k"})

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        return Connection({}, {"ssh_private_key": "key"})

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        return Connection({}, {"kubeconfig": kubeconfig or ""})

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        raise AssertionError(f"no stored secrets here ({where})")

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        return connection


@dataclass
class Staging:
    """The example's staging, bootstrapped: every stage applied once by sync `bootstrap`."""

    services: Services
    calls: Calls
    bare: Path
    environment_id: int
    revision_id: int
    bootstrap: int

    def commit(self, path: str, edit: Any) -> int:
        """Commit `edit(old text)` at `path`; the id of the recorded revision."""
        sha = commit_and_push(self.bare, {path: edit((EXAMPLE / path).read_text())}, f"edit {path}")
        with self.services.database.session() as session:
            env = session.get_one(Environment, self.environment_id)
            revision = Revision(repository_id=env.repository_id, ref="main", sha=sha, author="Alice Author "
                                "<alice@example.com>", message=f"edit {path}", committed_at=datetime.now(UTC))
            session.add(revision)
            session.flush()
            return revision.id

    def sync(self, trigger: SyncTrigger, revision_id: int | None = None) -> int:
        """Request, plan and apply one sync; its id."""
        with self.services.database.session() as session:
            env = session.get_one(Environment, self.environment_id)
            revision = session.get_one(Revision, revision_id or self.revision_id)
            sync, _ = syncs.request(session, env, revision, trigger)
            session.flush()
            sync_id = sync.id
        pipeline.plan_sync(self.services, sync_id)
        pipeline.apply_sync(self.services, sync_id)
        return sync_id

    def results(self, sync_id: int) -> tuple[L, dict[str, tuple[str, str | None]]]:
        """The sync's status and, per stage, its result status and why it was skipped."""
        with self.services.database.session() as session:
            sync = session.get_one(Sync, sync_id)
            return sync.status, {row.stage.value: (row.status.value, row.summary.get("skipped"))
                                 for row in sync.stage_results}

    def plan(self, sync_id: int) -> dict[str, Any]:
        with self.services.database.session() as session:
            plan = session.get_one(Sync, sync_id).plan
            assert plan is not None
            return dict(plan.stages)


@pytest.fixture
def staging(services: Services, environment: tuple[int, int], tmp_path: Path) -> Staging:
    calls = Calls()
    services.targets = Targets()
    services.stages = lambda name: RecordingStage(name, calls)  # type: ignore[assignment,return-value]
    with services.database.session() as session:
        session.get_one(Environment, environment[0]).name = "staging"
    world = Staging(services, calls, tmp_path / "infra.git", environment[0], environment[1], 0)
    world.bootstrap = world.sync(SyncTrigger.POLL)
    assert world.results(world.bootstrap)[0] is L.SUCCEEDED
    assert [stage for verb, stage in calls.take() if verb == "apply"] == [INFRA, CONFIG, WORKLOADS]
    return world


def _append(line: str) -> Any:
    return lambda text: text.rstrip("\n") + "\n" + line + "\n"


def _planned(calls: list[tuple[str, Stage]]) -> list[Stage]:
    return [stage for verb, stage in calls if verb == "plan"]


@pytest.mark.parametrize("trigger", [SyncTrigger.POLL, SyncTrigger.WEBHOOK], ids=["poll", "webhook"])
def test_a_commit_changing_only_a_workload_manifest_applies_it_without_a_terraform_plan_or_ansible_check(
        staging: Staging, trigger: SyncTrigger) -> None:
    revision = staging.commit("apps/web/overlays/staging/configmap-patch.yaml", _append("  EXTRA: \"1\""))

    sync_id = staging.sync(trigger, revision)

    assert staging.calls.take() == [("plan", WORKLOADS), ("apply", WORKLOADS)]
    status, results = staging.results(sync_id)
    reason = f"inputs unchanged since sync #{staging.bootstrap}"
    assert status is L.SUCCEEDED
    assert results == {"infrastructure": ("skipped", reason), "configuration": ("skipped", reason),
                       "workloads": ("succeeded", None)}
    plan = staging.plan(sync_id)
    assert plan["infrastructure"]["skipped"] == reason and plan["infrastructure"]["changes"] == []
    assert plan["workloads"]["summary"] == "+0 ~1 -0"


@pytest.mark.parametrize(("path", "edit", "planned"), [
    ("infrastructure/terraform/cluster/network.tf", _append("# a comment changes the module's files"), INFRA),
    ("environments/staging.yaml", lambda text: text.replace("instance_type: t3.small", "instance_type: t3.large"),
     INFRA),
    ("infrastructure/ansible/roles/common/tasks/main.yml", _append("# one more task, later"), CONFIG),
    ("environments/staging.yaml", lambda text: text.replace("log_level: debug", "log_level: info"), CONFIG),
], ids=["terraform-file", "terraform-variable", "ansible-role-task", "ansible-extra-var"])
def test_a_commit_changing_what_a_stage_reads_plans_that_stage_again(
        staging: Staging, path: str, edit: Any, planned: Stage) -> None:
    revision = staging.commit(path, edit)

    sync_id = staging.sync(SyncTrigger.POLL, revision)

    assert staging.calls.take() == [("plan", planned), ("apply", planned)]
    status, results = staging.results(sync_id)
    assert status is L.SUCCEEDED and results[planned.value] == ("succeeded", None)
    assert all(result[0] == "skipped" for stage, result in results.items() if stage != planned.value)


@pytest.mark.parametrize(("trigger", "planned"), [
    (SyncTrigger.MANUAL, [INFRA, CONFIG, WORKLOADS]),
    (SyncTrigger.POLL, []),
], ids=["manual-plans-every-stage", "poll-plans-none"])
def test_a_sync_at_the_same_revision_plans_every_stage_only_when_someone_asked_for_it(
        staging: Staging, trigger: SyncTrigger, planned: list[Stage]) -> None:
    sync_id = staging.sync(trigger)

    assert _planned(staging.calls.take()) == planned
    assert staging.results(sync_id)[0] is L.SUCCEEDED


@pytest.mark.parametrize("drifted", [WORKLOADS, CONFIG], ids=["workloads-drift", "configuration-drift"])
def test_a_heal_plans_only_the_stage_the_drift_report_found_drifted(staging: Staging, drifted: Stage) -> None:
    with staging.services.database.session() as session:
        report = DriftReport(environment_id=staging.environment_id, revision_id=staging.revision_id)
        report.items = [DriftItemRow(stage=drifted, address=f"{drifted.value}/thing", field="spec", desired=1,
                                     live=7)]
        session.add(report)

    sync_id = staging.sync(SyncTrigger.DRIFT)

    assert staging.calls.take() == [("plan", drifted), ("apply", drifted)]
    status, results = staging.results(sync_id)
    assert status is L.SUCCEEDED
    assert {stage for stage, result in results.items() if result[0] == "skipped"} == \
        {stage.value for stage in (INFRA, CONFIG, WORKLOADS)} - {drifted.value}


@pytest.mark.parametrize(("failing", "path", "line"), [
    (WORKLOADS, "apps/web/overlays/staging/configmap-patch.yaml", "  EXTRA: \"1\""),
    (CONFIG, "infrastructure/ansible/roles/common/tasks/main.yml", "# one more task, later"),
], ids=["workloads-failed", "configuration-failed"])
def test_a_stage_whose_last_apply_failed_is_planned_again_with_the_same_inputs(
        staging: Staging, failing: Stage, path: str, line: str) -> None:
    revision = staging.commit(path, _append(line))
    staging.calls.failing = {failing}
    failed = staging.sync(SyncTrigger.POLL, revision)
    assert staging.results(failed)[0] is L.FAILED and staging.calls.take() == [("plan", failing), ("apply", failing)]
    staging.calls.failing = set()

    again = staging.sync(SyncTrigger.POLL, revision)

    assert staging.calls.take() == [("plan", failing), ("apply", failing)]
    assert staging.results(again)[0] is L.SUCCEEDED


def test_a_stage_left_out_is_planned_once_the_infrastructure_outputs_it_reads_moved(staging: Staging) -> None:
    revision = staging.commit("infrastructure/terraform/cluster/nodes.tf", _append("# a second node"))
    staging.calls.nodes = [*NODES, {"name": "n2", "address": "198.51.100.2", "groups": ["nodes"]}]

    sync_id = staging.sync(SyncTrigger.POLL, revision)

    assert staging.calls.take() == [("plan", INFRA), ("apply", INFRA), ("plan", CONFIG), ("apply", CONFIG),
                                    ("plan", WORKLOADS), ("apply", WORKLOADS)]
    assert staging.plan(sync_id)["configuration"].get("planned_after_apply")
    assert staging.results(sync_id)[0] is L.SUCCEEDED


def test_a_sync_that_left_the_workloads_out_keeps_the_health_their_last_apply_saw(staging: Staging) -> None:
    with staging.services.database.session() as session:
        session.get_one(Environment, staging.environment_id).health = Health.PROGRESSING
    revision = staging.commit("infrastructure/terraform/cluster/network.tf", _append("# only Terraform"))

    staging.sync(SyncTrigger.POLL, revision)

    assert _planned(staging.calls.take()) == [INFRA]
    with staging.services.database.session() as session:
        assert session.get_one(Environment, staging.environment_id).health is Health.PROGRESSING


class MachineTargets(Targets):
    """As the real targets do, Terraform's workspaces live in this machine's data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def infrastructure(self, repository: str, environment: str) -> Connection:
        connection = super().infrastructure(repository, environment)
        workspaces = str(self.data_dir / "runs" / repository / "workspaces")
        return Connection({**connection.settings, "terraform_workspaces": workspaces}, connection.credentials)


def test_a_commit_synced_by_a_worker_on_another_machine_still_leaves_the_unchanged_stages_out(
        services: Services, environment: tuple[int, int], tmp_path: Path) -> None:
    """Several machines share the store, not their data dirs: where a machine keeps its Terraform
    workspaces is not an input of the stage."""
    calls = Calls()
    services.stages = lambda name: RecordingStage(name, calls)  # type: ignore[assignment,return-value]
    services.targets = MachineTargets(services.data_dir)
    with services.database.session() as session:
        session.get_one(Environment, environment[0]).name = "staging"
    world = Staging(services, calls, tmp_path / "infra.git", environment[0], environment[1], 0)
    world.bootstrap = world.sync(SyncTrigger.POLL)
    calls.take()
    revision = world.commit("apps/web/overlays/staging/configmap-patch.yaml", _append("  EXTRA: \"1\""))
    services.data_dir = tmp_path / "machine-b"
    services.targets = MachineTargets(services.data_dir)

    sync_id = world.sync(SyncTrigger.POLL, revision)

    assert calls.take() == [("plan", WORKLOADS), ("apply", WORKLOADS)]
    assert world.results(sync_id)[0] is L.SUCCEEDED
