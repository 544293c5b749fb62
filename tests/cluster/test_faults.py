"""Faults on a multi-machine installation: each scenario breaks one part in the middle of a sync and
ends with staging Synced and Healthy at the revision it should be at, every planned change applied
exactly once (the Kubernetes emulator's log of real writes; Terraform's state serial for the stages
that must not run), no environment lock held and no sync left unfinished.

"Mid-sync" is a point the test observes, not a sleep: an injected latency holds the workloads
apply's one real write at the emulator for a few seconds, and the fault is injected once the
emulator has that write in hand (the sync is then `applying`, its worker holds the lock). For a
kill during `terraform apply`, the proxy in front of moto holds the apply's first EC2 `CreateTags`
call instead, for as long as the test wants: terraform then holds its DynamoDB state lock.
Scenarios run in file order, each from the Synced state the previous one left.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from reconciler.pipeline import UNRECORDED
from store import Sync
from tests.cluster.conftest import (
    EXAMPLE,
    GREETING_FILE,
    POLL_INTERVAL,
    STAGING_CONFIG,
    Cluster,
    greeting_file,
    until,
)
from tests.support.git_server import commit_and_push, git
from tidegate.client import ClientError, SyncView

HELD_WRITE_SECONDS = 3.0
"""How long the emulator holds the apply's real write of the staging config: the window in which
the test injects its fault. Shorter than the lock's life (15 s), so a write the killed worker had
already sent lands before any other worker may take the environment over."""
STAGING_ENVIRONMENT = "environments/staging.yaml"
HELD_AWS_CALL = "CreateTags"
"""What the proxy holds of a Terraform apply that changes staging's tags: EC2's tagging call (the
VPC, subnets, instances... are retagged in parallel; the first of those calls is held)."""


@dataclass(frozen=True)
class Before:
    """What a scenario compares its end with: Terraform serials and the newest sync."""

    serials: dict[str, int]
    last_sync: int
    fence: int

    @classmethod
    def take(cls, cluster: Cluster) -> Before:
        cluster.kube().clear_requests()
        with cluster.services.database.session() as session:
            last = session.scalar(select(func.max(Sync.id))) or 0
            fence = session.scalar(select(func.max(Sync.fencing_token))) or 0
        return cls({e: cluster.serial(e) for e in ("staging", "production")}, last, fence)


def _hold_the_write(cluster: Cluster) -> None:
    """The next real write of the staging config waits HELD_WRITE_SECONDS at the emulator."""
    resource, namespace, name = STAGING_CONFIG
    cluster.kube().inject(verb="patch", resource=resource, namespace=namespace, name=name, dry_run=False,
                          latency=HELD_WRITE_SECONDS, times=1)


def _mid_apply(cluster: Cluster, greeting: str) -> tuple[str, SyncView]:
    """Push a greeting and return once its apply's write is at the emulator: (commit, that sync)."""
    _hold_the_write(cluster)
    sha = cluster.commit_greeting(greeting)
    cluster.poll()
    until(cluster.write_in_flight, 180, "the workloads apply sending its write of the staging config", cluster)
    sync = cluster.syncs("staging")[0]
    assert (sync.status, (sync.revision or "")[:12]) == ("applying", sha[:12]), sync
    return sha, sync


def _settled(cluster: Cluster, sha: str, before: Before) -> list[SyncView]:
    """The end every scenario must reach; returns staging's syncs since `before`, oldest first."""
    cluster.synced_at("staging", sha)
    assert cluster.view("production").sync_status == "Synced"
    assert cluster.written() == Counter({STAGING_CONFIG: 1}), "each planned change applied exactly once"
    assert {e: cluster.serial(e) for e in before.serials} == before.serials, "no Terraform apply ran"
    assert cluster.unfinished() == [] and cluster.lock("staging") is None and cluster.lock("production") is None
    return sorted((s for s in cluster.syncs("staging") if s.id > before.last_sync), key=lambda s: s.id)


def test_the_installation_bootstraps_both_environments_on_two_machines(bootstrapped: Cluster) -> None:
    staging = bootstrapped.syncs("staging")
    assert staging[0].status == "succeeded" and bootstrapped.view("production").health == "Healthy"
    workers = bootstrapped.api.workers() if bootstrapped.api is not None else []
    assert len(workers) == 2 and all(w.sealed for w in workers), workers


def test_a_worker_killed_during_the_workloads_apply_is_replaced_by_the_other_machine(
        bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    sha, killed = _mid_apply(cluster, "a worker was killed here")
    victim = cluster.holder_of("staging")
    cluster.kill(victim)
    try:
        syncs = _settled(cluster, sha, before)
    finally:
        cluster.start_worker(victim.split("@")[1])
    lost = next(s for s in syncs if s.id == killed.id)
    assert lost.status == "failed" and "lost during workloads" in (lost.error or ""), lost
    replacement = [s for s in syncs if s.id > killed.id]
    assert [s.status for s in replacement] == ["succeeded"], replacement
    assert not any(s.status == "succeeded" for s in syncs if s.id < killed.id)


def _retag_staging(cluster: Cluster, value: str) -> str:
    """Push a commit that gives every staging resource one more tag (an in-place Terraform update,
    no output moves, so only the infrastructure stage has changes); returns the commit."""
    text = (EXAMPLE / STAGING_ENVIRONMENT).read_text()
    anchor = "      instance_type: t3.small\n"
    assert anchor in text
    retagged = text.replace(anchor, f"{anchor}      tags: {{drill: {json.dumps(value)}}}\n")
    return commit_and_push(cluster.bare, {STAGING_ENVIRONMENT: retagged}, f"staging resources tagged drill={value}")


def test_a_worker_killed_during_terraform_apply_leaves_a_state_lock_broken_only_once_it_is_known_dead(
        bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    cluster.aws.hold(HELD_AWS_CALL)
    sha = _retag_staging(cluster, "killed-apply")
    cluster.poll()
    until(cluster.aws.held, 240, f"terraform apply sending its {HELD_AWS_CALL} call", cluster)
    killed = cluster.syncs("staging")[0]
    assert (killed.status, (killed.revision or "")[:12]) == ("applying", sha[:12]), killed
    env_lock = cluster.lock("staging")
    assert env_lock is not None
    owner, victim = env_lock[1], cluster.holder_of("staging")
    held = cluster.state_lock("staging")
    assert held is not None and held["Operation"] == "OperationTypeApply", held
    assert f"@w.{owner}-tf" in held["Who"], (owner, held)  # the lock names the worker process applying

    cluster.kill(victim)
    cluster.aws.release()  # the held call is dropped: its client is dead
    try:
        def heartbeat_gone() -> bool:
            lock = cluster.state_lock("staging")  # read first: a heartbeat never comes back
            assert lock == held or not cluster.beating(owner), "state lock broken while its holder still beat"
            return not cluster.beating(owner)
        until(heartbeat_gone, 60, f"the heartbeat of {owner} gone", cluster)
        cluster.synced_at("staging", sha)
    finally:
        cluster.start_worker(victim.split("@")[1])

    assert cluster.serial("staging") == before.serials["staging"] + 1, "one apply recorded: the replacement's"
    assert cluster.serial("production") == before.serials["production"]
    assert cluster.written() == Counter(), "only the infrastructure stage had changes"
    assert cluster.state_lock("staging") is None and cluster.lock("staging") is None and cluster.unfinished() == []
    syncs = sorted((s for s in cluster.syncs("staging") if s.id > before.last_sync), key=lambda s: s.id)
    lost = next(s for s in syncs if s.id == killed.id)
    assert lost.status == "failed" and "lost during infrastructure" in (lost.error or ""), lost
    assert UNRECORDED.lstrip("; ") in (lost.error or ""), lost.error
    assert [s.status for s in syncs if s.id > killed.id] == ["succeeded"], syncs
    audit = cluster.audit()
    [broken] = [e["details"] for e in audit if e["action"] == "state_lock.broken" and e["details"]["sync"] > killed.id]
    assert f"broke state lock {held['ID']} held by {held['Who']} (its worker is dead)" in broken["note"], broken
    survivor = "machine-b" if victim.endswith("machine-a") else "machine-a"
    assert broken["note"] in (cluster.base / "logs" / f"worker-{survivor}.log").read_text(errors="replace")
    recovered = next(e for e in audit if e["action"] == "sync.recovered")
    assert recovered["details"]["replacement"] > killed.id and "unrecorded" in recovered["details"], recovered


def test_a_redis_restart_mid_sync_loses_neither_the_sync_nor_the_fencing_order(bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    sha, _ = _mid_apply(cluster, "redis restarted here")
    cluster.redis.stop()
    cluster.redis.start()  # the same directory: the append-only file brings locks, counters and queues back
    syncs = _settled(cluster, sha, before)
    assert syncs[-1].status == "succeeded", syncs
    with cluster.services.database.session() as session:
        tokens = session.scalars(select(Sync.fencing_token).where(Sync.id > before.last_sync)).all()
    assert all(token is not None and token > before.fence for token in tokens), (before.fence, tokens)


def test_a_postgresql_restart_mid_sync_ends_applied_or_replanned(bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    sha, interrupted = _mid_apply(cluster, "postgresql restarted here")
    cluster.postgres.restart()
    syncs = _settled(cluster, sha, before)
    first = next(s for s in syncs if s.id == interrupted.id)
    if first.status != "succeeded":  # the worker lost its transaction: the sync was failed and planned again
        assert first.status == "failed" and "lost" in (first.error or ""), first
        assert syncs[-1].status == "succeeded", syncs


def test_an_unreachable_git_server_keeps_the_last_good_state_and_says_why(bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    good = cluster.view("staging").revision
    cluster.restart_git(down=True)
    try:
        until(lambda: cluster.repository()["poll_error"], 4 * POLL_INTERVAL, "a failed poll reported", cluster)
        pending = cluster.commit_greeting("pushed while the git server was away")
        polls = cluster.polls()
        until(lambda: cluster.polls() >= polls + 2, 6 * POLL_INTERVAL, "two more polls, both failing", cluster)
        repository = cluster.repository()
        view = cluster.view("staging")
    finally:
        cluster.restart_git(down=False)
    assert repository["poll_error"] and repository["head"] == good, repository
    assert (view.revision, view.sync_status, view.health) == (good, "Synced", "Healthy")
    _settled(cluster, pending, before)  # the beat's next poll after the outage, nobody asked
    assert cluster.repository()["poll_error"] is None


def test_a_force_push_that_removes_the_applied_commit_is_reported_and_never_applied_again(
        bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    removed = cluster.commit_greeting("this commit will be force-pushed away")
    cluster.poll()
    cluster.synced_at("staging", removed)
    before = Before.take(cluster)
    parent = git("rev-parse", f"{removed}^", cwd=cluster.bare).strip()
    head = commit_and_push(cluster.bare, {GREETING_FILE: greeting_file("rewritten history")},
                           "staging greets from rewritten history", parent=parent)  # a force-push
    cluster.poll()
    syncs = _settled(cluster, head, before)
    assert {(s.revision or "")[:12] for s in syncs} == {head[:12]}, "nothing planned or applied from the removed commit"
    audit = [e for e in cluster.audit() if e["action"] == "repository.force_pushed"]
    assert audit and removed[:12] in json.dumps(audit[0]["details"]), audit
    assert cluster.api is not None
    # serve's own mirror never held it ("no known revision"); a worker's still does ("not a commit of")
    with pytest.raises(ClientError, match=r"not a commit of|no known revision"):
        cluster.api.sync("staging", revision=removed)  # a rollback to it, asked by an admin
    assert cluster.unfinished() == [] and not cluster.view("staging").paused


def test_a_beat_killed_and_started_again_schedules_each_poll_once(bootstrapped: Cluster) -> None:
    cluster = bootstrapped
    before = Before.take(cluster)
    cluster.kill("beat@scheduler")
    cluster.start("beat", "scheduler")
    sha = cluster.commit_greeting("scheduled by the restarted beat")
    polls = cluster.polls()
    window = 4 * POLL_INTERVAL
    start = cluster.services.redis.time()[0]
    _settled(cluster, sha, before)  # nobody polls by hand: only the restarted beat can have seen the commit
    until(lambda: cluster.services.redis.time()[0] - start >= window, window + 5, "the counting window")
    elapsed = cluster.services.redis.time()[0] - start
    assert cluster.polls() - polls <= elapsed // POLL_INTERVAL + 1, "one poll per interval, not one per beat"
    assert cluster.services.redis.hlen("tidegate:poll:next") == 1


@pytest.fixture(autouse=True)
def _no_faults_left(bootstrapped: Cluster) -> None:
    """A scenario's injected latency or held AWS call never reaches the next one."""
    bootstrapped.kube().clear_faults()
    bootstrapped.aws.release(forward=True)
