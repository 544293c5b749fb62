"""The pipeline's rules on the example repo, with in-process stand-ins for the three providers.

The providers have their own tests against real Terraform, Ansible and the API emulator (and the
end-to-end tests run them all together); here the stand-ins let each rule be shown in
milliseconds: deferred stages planned once the infrastructure applied, approvals kept or asked
again, stale plans superseded, an interrupted apply never repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from providers.stage import (
    Action,
    Change,
    DriftItem,
    Outcome,
    Stage,
    StageContext,
    StageFailed,
    StagePlan,
    StageResult,
    StalePlan,
)
from reconciler import approvals, pipeline, policies, syncs
from reconciler.errors import Busy
from reconciler.locks import EnvironmentLock
from reconciler.runtime import Services
from reconciler.status import status_of
from reconciler.syncs import L
from store import (
    ApprovalDecision,
    AuditEvent,
    Environment,
    Health,
    Revision,
    StageStatus,
    Sync,
    SyncStageResult,
    SyncStatus,
    SyncTrigger,
)
from tests.reconciler.conftest import principal
from tests.support.doubles import RecordingQueue
from tests.support.slow_sync import Targets

NODES = [{"name": "n1", "address": "10.0.0.1", "groups": ["nodes"]}]


@dataclass
class World:
    """What the stand-in providers have "applied", and how the next plans should look."""

    infra_applied: bool = False
    infra_stale: bool = False
    config_changes: list[str] = field(default_factory=lambda: ["n1/write config"])
    config_plan_error: str | None = None
    broken_locks: list[str] = field(default_factory=list)
    applied: list[Stage] = field(default_factory=list)


class FakeStage:
    def __init__(self, name: Stage, world: World) -> None:
        self.name = name
        self.world = world

    def _changes(self) -> list[Change]:
        if self.name is Stage.INFRASTRUCTURE:
            return [] if self.world.infra_applied else [Change(self.name, "aws_vpc.this", Action.create, "+")]
        if self.name is Stage.CONFIGURATION:
            return [Change(self.name, address, Action.update, "~") for address in self.world.config_changes]
        return [Change(self.name, "apps/Deployment/web/web", Action.create, "+")]

    def plan(self, context: StageContext[Any]) -> StagePlan:
        if self.name is Stage.CONFIGURATION:
            assert context.spec.nodes, "the configuration is planned with the nodes the infrastructure reported"
        if self.name is Stage.WORKLOADS:
            assert context.credentials["kubeconfig"], "the workloads are planned with the infrastructure's kubeconfig"
        if self.name is Stage.CONFIGURATION and self.world.config_plan_error:
            raise StageFailed(self.world.config_plan_error)
        plan = StagePlan(self.name, self._changes(), digest=str(self._changes()), live_state="serial-1")
        if self.name is Stage.INFRASTRUCTURE and self.world.broken_locks:
            plan.details["broken_locks"] = list(self.world.broken_locks)
        return plan

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult:
        if self.name is Stage.INFRASTRUCTURE and self.world.infra_stale:
            raise StalePlan("the state changed since the plan was made")
        self.world.applied.append(self.name)
        outputs: dict[str, Any] = {}
        if self.name is Stage.INFRASTRUCTURE:
            self.world.infra_applied = True
            outputs = {"nodes": NODES, "kubeconfig": "apiVersion: v1\nkind: Config\n"}
        if self.name is Stage.WORKLOADS:
            outputs = {"health": {"environment": "Healthy"}, "inventory": {}}
        return StageResult(self.name, {c.address: Outcome.created for c in plan.changes}, outputs=outputs)

    def observe(self, context: StageContext[Any]) -> list[DriftItem]:
        return []


@pytest.fixture
def world(services: Services) -> World:
    state = World()
    services.targets = Targets()
    services.stages = lambda name: FakeStage(name, state)  # type: ignore[assignment,return-value]
    return state


def _sync(services: Services, environment: tuple[int, int], name: str = "production",
          trigger: SyncTrigger = SyncTrigger.POLL) -> int:
    with services.database.session() as session:
        env = session.get_one(Environment, environment[0])
        env.name = name
        sync, _ = syncs.request(session, env, session.get_one(Revision, environment[1]), trigger)
        session.flush()
        return sync.id


def _staging_healthy_at(services: Services, environment: tuple[int, int]) -> None:
    """Production `dependsOn` staging: make staging Synced and Healthy at the same revision."""
    with services.database.session() as session:
        production = session.get_one(Environment, environment[0])
        session.add(Environment(repository_id=production.repository_id, name="staging", health=Health.HEALTHY,
                                synced_revision_id=environment[1], desired_revision_id=environment[1]))


def _applied_before(services: Services, environment: tuple[int, int], outputs: dict[str, Any]) -> None:
    """A previous sync applied the infrastructure with these outputs."""
    with services.database.session() as session:
        old = Sync(environment_id=environment[0], revision_id=environment[1], trigger=SyncTrigger.POLL,
                   status=L.SUCCEEDED)
        session.add(old)
        session.flush()
        session.add(SyncStageResult(sync_id=old.id, stage=Stage.INFRASTRUCTURE, status=StageStatus.SUCCEEDED,
                                    outputs=services.secrets.seal(json.dumps({"values": outputs}))))


def _sync_row(services: Services, sync_id: int) -> tuple[L, str | None, list[tuple[str, str]]]:
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        return sync.status, sync.error, sorted((r.stage.value, r.status.value) for r in sync.stage_results)


def _queued(services: Services) -> list[tuple[str, int]]:
    assert isinstance(services.queue, RecordingQueue)
    sent, services.queue.sent = list(services.queue.sent), []
    return sent


def test_a_first_sync_defers_later_stages_and_plans_them_once_the_infrastructure_applied(
        services: Services, environment: tuple[int, int], world: World) -> None:
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)
    with services.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None
        assert plan.stages["configuration"]["deferred"] and plan.stages["workloads"]["deferred"]
    assert _queued(services) == [("apply", sync_id)], "staging needs no approval"
    pipeline.apply_sync(services, sync_id)
    status, _, stages = _sync_row(services, sync_id)
    assert status is L.SUCCEEDED
    assert stages == [("configuration", "succeeded"), ("infrastructure", "succeeded"), ("workloads", "succeeded")]
    assert world.applied == [Stage.INFRASTRUCTURE, Stage.CONFIGURATION, Stage.WORKLOADS]
    with services.database.session() as session:
        env = session.get_one(Environment, environment[0])
        assert (status_of(session, env), env.health.value, env.synced_revision_id) == (SyncStatus.SYNCED, "Healthy",
                                                                                      environment[1])


def test_an_admins_server_policy_gates_an_environment_its_repository_does_not(
        services: Services, environment: tuple[int, int], world: World) -> None:
    with services.database.session() as session:
        policy = policies.parse_policy(True, 1, ["group:platform-leads"])
        policies.set_server_policy(session, "infra", "staging", policy, actor="root")
    sync_id = _sync(services, environment, "staging")

    pipeline.plan_sync(services, sync_id)

    assert _sync_row(services, sync_id)[0] is L.AWAITING_APPROVAL and _queued(services) == []
    decision = approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.APPROVE)
    assert decision.approved and "server policy of infra/staging: 1/1" in decision.detail


def test_a_gated_environment_waits_then_applies_exactly_the_approved_plan(
        services: Services, environment: tuple[int, int], world: World) -> None:
    world.infra_applied = True  # a later sync: every stage can be planned up front
    sync_id = _sync(services, environment)
    pipeline.plan_sync(services, sync_id)
    status, error, _ = _sync_row(services, sync_id)
    assert status is L.PENDING and error == "waiting: staging has not synced yet", "promotion: staging first"
    _staging_healthy_at(services, environment)
    pipeline.plan_sync(services, sync_id)
    assert _sync_row(services, sync_id)[0] is L.AWAITING_APPROVAL and _queued(services) == []
    approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.APPROVE)
    assert _queued(services) == [("apply", sync_id)]
    pipeline.apply_sync(services, sync_id)
    assert _sync_row(services, sync_id)[0] is L.SUCCEEDED


def test_a_later_stage_whose_changes_moved_after_the_infrastructure_applied_asks_again(
        services: Services, environment: tuple[int, int], world: World) -> None:
    _applied_before(services, environment, {"nodes": [{**NODES[0], "address": "10.0.0.99"}], "kubeconfig": "x"})
    _staging_healthy_at(services, environment)
    sync_id = _sync(services, environment)
    pipeline.plan_sync(services, sync_id)
    with services.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None and not plan.stages["configuration"].get("deferred")
    approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.APPROVE)
    with services.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None
        approved_fingerprint = plan.fingerprint
    world.config_changes = ["n1/write config", "n2/write config"]  # the new outputs bring another change
    pipeline.apply_sync(services, sync_id)
    status, error, _ = _sync_row(services, sync_id)
    assert status is L.AWAITING_APPROVAL and "approve the new plan" in (error or "")
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        assert sync.plan is not None and sync.plan.fingerprint != approved_fingerprint


def test_a_plan_the_live_state_outran_is_superseded_and_planned_again(
        services: Services, environment: tuple[int, int], world: World) -> None:
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)
    _queued(services)
    world.infra_stale = True
    pipeline.apply_sync(services, sync_id)
    status, error, _ = _sync_row(services, sync_id)
    assert status is L.SUPERSEDED and "stale plan" in (error or "")
    (kind, fresh), = _queued(services)
    assert kind == "plan" and fresh != sync_id
    assert world.applied == []


def test_an_apply_left_by_a_dead_worker_is_failed_and_planned_again_never_repeated(
        services: Services, environment: tuple[int, int], world: World) -> None:
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)
    _queued(services)
    lease = EnvironmentLock(services.redis, "infra/staging").acquire("dead-worker")
    assert lease is not None
    with services.database.session() as session:
        syncs.transition(session.get_one(Sync, sync_id), L.APPLYING, lease)
    services.redis.delete(lease.key)  # its lock expired with it
    pipeline.apply_sync(services, sync_id)
    status, error, _ = _sync_row(services, sync_id)
    assert status is L.FAILED and "was lost" in (error or "")
    (kind, fresh), = _queued(services)
    assert kind == "plan" and fresh != sync_id and world.applied == []


@pytest.mark.parametrize(("stage", "unrecorded"), [
    pytest.param(Stage.INFRASTRUCTURE, True, id="killed-terraform-apply-may-leave-resources-unrecorded"),
    pytest.param(Stage.CONFIGURATION, False, id="killed-configuration-makes-no-such-claim"),
])
def test_a_sync_lost_during_a_stage_says_what_the_killed_apply_may_have_left(
        services: Services, environment: tuple[int, int], world: World, stage: Stage, unrecorded: bool) -> None:
    """Terraform cannot know resources a killed apply created but never wrote to state: the lost
    sync and its recovery's audit say so, rather than claim its replacement applies exactly once."""
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)
    _queued(services)
    lease = EnvironmentLock(services.redis, "infra/staging").acquire("dead-worker")
    assert lease is not None
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        syncs.transition(sync, L.APPLYING, lease)
        session.add(SyncStageResult(sync_id=sync_id, stage=stage, status=StageStatus.APPLYING))
    services.redis.delete(lease.key)
    pipeline.apply_sync(services, sync_id)

    status, error, _ = _sync_row(services, sync_id)
    assert status is L.FAILED and f"lost during {stage.value}" in (error or "")
    assert ("did not record in state" in (error or "")) is unrecorded
    with services.database.session() as session:
        recovered = session.query(AuditEvent).filter_by(action="sync.recovered").one()
        assert ("unrecorded" in recovered.details) is unrecorded


def test_a_state_lock_the_plan_broke_is_in_the_audit_log_naming_its_dead_holder(
        services: Services, environment: tuple[int, int], world: World) -> None:
    note = ("broke state lock 5f1c held by tidegate-runner@w.vm-b:4242-tf0a1b2c3d4e (its worker is dead) for "
            "OperationTypeApply; an apply killed while holding it may have created resources it did not record")
    world.broken_locks = [note]
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)

    with services.database.session() as session:
        broken = session.query(AuditEvent).filter_by(action="state_lock.broken").one()
        assert broken.details == {"sync": sync_id, "stage": "infrastructure", "note": note}


def test_a_deferred_stage_that_fails_to_plan_fails_the_sync_at_once_with_its_own_error(
        services: Services, environment: tuple[int, int], world: World) -> None:
    """Planned only after the infrastructure applied, inside the apply task: its failure is recorded
    by that task with the stage's error, never left `applying` for the sweeper to call a lost worker."""
    sync_id = _sync(services, environment, "staging")
    pipeline.plan_sync(services, sync_id)
    _queued(services)
    world.config_plan_error = "staging-node-1: syntax error in the inventory the outputs gave"

    pipeline.apply_sync(services, sync_id)

    status, error, stages = _sync_row(services, sync_id)
    assert status is L.FAILED
    assert error == "configuration: staging-node-1: syntax error in the inventory the outputs gave"
    assert ("infrastructure", "succeeded") in stages and ("workloads", "skipped") in stages
    assert "lost" not in (error or "") and _queued(services) == []


def test_an_environment_locked_by_another_worker_is_retried_later(
        services: Services, environment: tuple[int, int], world: World) -> None:
    sync_id = _sync(services, environment, "staging")
    assert EnvironmentLock(services.redis, "infra/staging").acquire("other-worker") is not None
    with pytest.raises(Busy, match="other-worker"):
        pipeline.plan_sync(services, sync_id)
    assert _sync_row(services, sync_id)[0] is L.PENDING


def test_an_automated_apply_is_queued_only_after_the_planner_let_go_of_the_lock(
        services: Services, environment: tuple[int, int], world: World) -> None:
    """Queued while the planner still held the lock, the apply would find it busy and back off."""
    sync_id = _sync(services, environment, "staging")
    held_when_queued: list[bool] = []
    queue = services.queue
    assert isinstance(queue, RecordingQueue)
    original = queue.apply

    def apply(queued: int) -> None:
        held_when_queued.append(EnvironmentLock(services.redis, "infra/staging").current() is not None)
        original(queued)

    queue.apply = apply  # type: ignore[method-assign,assignment]
    pipeline.plan_sync(services, sync_id)
    assert _queued(services) == [("apply", sync_id)] and held_when_queued == [False]
