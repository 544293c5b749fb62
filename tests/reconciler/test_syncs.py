"""Sync records: idempotent requests, the state machine, fencing, and approvals."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reconciler import approvals, syncs
from reconciler.locks import EnvironmentLock, LockLost
from reconciler.runtime import Services
from reconciler.syncs import L, TransitionRefused
from store import (
    ApprovalDecision,
    Environment,
    Group,
    GroupMember,
    Plan,
    Revision,
    Role,
    RoleBinding,
    Sync,
    SyncTrigger,
    User,
)
from tests.reconciler.conftest import principal
from tests.support.doubles import RecordingQueue


def _request(services: Services, ids: tuple[int, int]) -> int:
    with services.database.session() as session:
        env, revision = session.get_one(Environment, ids[0]), session.get_one(Revision, ids[1])
        sync, _ = syncs.request(session, env, revision, SyncTrigger.POLL)
        session.flush()
        return sync.id


def test_asking_twice_for_the_same_revision_gives_the_same_sync(services: Services,
                                                                 environment: tuple[int, int]) -> None:
    assert _request(services, environment) == _request(services, environment)


def test_a_newer_revision_supersedes_a_sync_that_has_not_started_applying(services: Services,
                                                                         environment: tuple[int, int]) -> None:
    first = _request(services, environment)
    with services.database.session() as session:
        env = session.get_one(Environment, environment[0])
        newer = Revision(repository_id=env.repository_id, ref="main", sha="b" * 40,
                         committed_at=env.repository.created_at)
        session.add(newer)
        session.flush()
        _, created = syncs.request(session, env, newer, SyncTrigger.POLL)
        assert created
        assert session.get_one(Sync, first).status is L.SUPERSEDED


@pytest.mark.parametrize(("start", "to"), [
    (L.PENDING, L.APPLYING), (L.SUCCEEDED, L.PLANNING), (L.APPLYING, L.PENDING), (L.FAILED, L.APPROVED),
], ids=["skip-planning", "reopen-succeeded", "back-to-pending-mid-apply", "approve-failed"])
def test_the_state_machine_refuses_impossible_moves(services: Services, environment: tuple[int, int],
                                                    start: L, to: L) -> None:
    sync_id = _request(services, environment)
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        sync.status = start
        with pytest.raises(TransitionRefused):
            syncs.transition(sync, to)


def test_a_worker_that_lost_its_lock_can_no_longer_move_the_sync(services: Services,
                                                                 environment: tuple[int, int]) -> None:
    sync_id = _request(services, environment)
    lock = EnvironmentLock(services.redis, "infra/staging", ttl=60)
    stale = lock.acquire("worker-a")
    assert stale is not None
    services.redis.delete(lock.key)  # its lock expired while it was paused
    fresh = lock.acquire("worker-b")
    assert fresh is not None and fresh.token > stale.token
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        syncs.transition(sync, L.PLANNING, fresh)
        with pytest.raises(LockLost):
            syncs.transition(sync, L.APPROVED, stale)
        assert sync.fencing_token == fresh.token


def _awaiting(services: Services, environment: tuple[int, int]) -> int:
    sync_id = _request(services, environment)
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        plan = Plan(environment_id=environment[0], revision_id=environment[1], fingerprint="f" * 64, stages={})
        session.add(plan)
        session.flush()
        sync.plan_id = plan.id
        syncs.transition(sync, L.PLANNING)
        syncs.transition(sync, L.AWAITING_APPROVAL)
    return sync_id


@pytest.mark.parametrize("name,email", [
    pytest.param("a.author", "alice@example.com", id="email"),
    pytest.param("Alice Author", None, id="name"),
    pytest.param("alice", None, id="login-is-the-mailbox-name"),
])
def test_the_author_of_a_revision_cannot_approve_it(services: Services, environment: tuple[int, int],
                                                    name: str, email: str | None) -> None:
    sync_id = _awaiting(services, environment)
    if name != "alice":
        with services.database.session() as session:
            user = User(name=name, email=email)
            session.add(user)
            session.flush()
            leads = session.scalars(select(Group).where(Group.name == "platform-leads")).one()
            session.add(GroupMember(group_id=leads.id, user_id=user.id))
    with pytest.raises(approvals.ApprovalRefused, match="own change") as refused:
        approvals.decide(services, sync_id, principal(services, name), ApprovalDecision.APPROVE)
    assert refused.value.forbidden


def test_only_people_the_policy_names_may_approve(services: Services, environment: tuple[int, int]) -> None:
    sync_id = _awaiting(services, environment)
    with services.database.session() as session:
        session.add_all([User(name="mallory"), RoleBinding(subject="user:mallory", role=Role.APPROVER, scope="*")])
    with pytest.raises(approvals.ApprovalRefused, match="not an approver of infra/production"):
        approvals.decide(services, sync_id, principal(services, "mallory"), ApprovalDecision.APPROVE)
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == []


def test_an_approval_binds_to_the_plan_fingerprint_and_queues_the_apply(services: Services,
                                                                       environment: tuple[int, int]) -> None:
    sync_id = _awaiting(services, environment)
    decision = approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.APPROVE,
                                comment="looks right")
    assert decision.approved and decision.fingerprint == "f" * 64
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == [("apply", sync_id)]
    with pytest.raises(approvals.ApprovalRefused, match="not awaiting approval"):
        approvals.decide(services, sync_id, principal(services, "carol"), ApprovalDecision.APPROVE)


def test_a_rejection_fails_the_sync_and_applies_nothing(services: Services, environment: tuple[int, int]) -> None:
    sync_id = _awaiting(services, environment)
    approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.REJECT, comment="not today")
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        assert sync.status is L.FAILED and "rejected by bob: not today" in (sync.error or "")
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == []


def test_the_author_may_reject_their_own_change(services: Services, environment: tuple[int, int]) -> None:
    """Withdrawing a change is no self-approval: only approving is refused to its authors."""
    sync_id = _awaiting(services, environment)
    decision = approvals.decide(services, sync_id, principal(services, "alice"), ApprovalDecision.REJECT)
    assert not decision.approved


def test_a_platform_lead_without_the_approver_role_cannot_approve(services: Services,
                                                                 environment: tuple[int, int]) -> None:
    sync_id = _awaiting(services, environment)
    with services.database.session() as session:
        for binding in session.scalars(select(RoleBinding)):
            session.delete(binding)
    with pytest.raises(approvals.ApprovalRefused, match="lacks the approve permission on infra/production"):
        approvals.decide(services, sync_id, principal(services, "bob"), ApprovalDecision.APPROVE)


def test_an_applying_sync_learns_that_a_newer_revision_waits_to_plan(services: Services,
                                                                    environment: tuple[int, int]) -> None:
    first = _request(services, environment)
    with services.database.session() as session:
        sync = session.get_one(Sync, first)
        sync.status = L.APPLYING  # as a worker mid-health-wait has it
        assert syncs.newer_revision(session, sync) is None
        env = session.get_one(Environment, environment[0])
        newer = Revision(repository_id=env.repository_id, ref="main", sha="c" * 40,
                         committed_at=env.repository.created_at)
        session.add(newer)
        session.flush()
        fresh, _ = syncs.request(session, env, newer, SyncTrigger.POLL)
        session.flush()
        assert sync.status is L.APPLYING  # an applying sync is never superseded, only told
        assert syncs.newer_revision(session, sync) == f"sync #{fresh.id} of {'c' * 12} is ready to plan"
