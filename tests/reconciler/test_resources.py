"""The facts of the live resource tree: each object's sync state from the last look and the open
drift, Terraform's resources from the last apply that ran it, Ansible's hosts from their last run."""

from __future__ import annotations

from typing import Any

import pytest

from providers.stage import LiveHealth
from reconciler import observations, resources
from reconciler.runtime import Services
from store import (
    DriftItemRow,
    DriftReport,
    Environment,
    Revision,
    Stage,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
    utcnow,
)

WEB = "apps/Deployment/web/web"


def _synced_and_looked_at(services: Services, environment: tuple[int, int], health: str,
                          items: list[tuple[str, Any]], *, other_revision: bool = False) -> resources.Tree:
    """Production synced, its web Deployment looked at with `health`, and an open report of `items`
    ((field, live) of the Deployment) at its revision or at another one."""
    env_id, revision_id = environment
    with services.database.session() as session:
        env = session.get_one(Environment, env_id)
        env.synced_revision_id = env.desired_revision_id = revision_id
        observations.record(session, env, [LiveHealth(WEB, health, "", "web")], [], assessed=True, stale_after=None)
        if items:
            at = revision_id
            if other_revision:
                older = Revision(repository_id=env.repository_id, ref="main", sha="0" * 40, committed_at=utcnow())
                session.add(older)
                session.flush()
                at = older.id
            report = DriftReport(environment_id=env_id, revision_id=at)
            report.items = [DriftItemRow(stage=Stage.WORKLOADS, address=WEB, field=field, desired="present"
                                         if field == "/" else 3, live=live) for field, live in items]
            session.add(report)
        session.flush()
        return resources.tree(services, session, env)


@pytest.mark.parametrize(("health", "items", "other_revision", "sync"), [
    ("Healthy", [], False, "Synced"),
    ("Progressing", [("/spec/replicas", 5)], False, "OutOfSync"),
    ("Missing", [], False, "Missing"),
    ("Unknown", [("/", None)], False, "Missing"),
    ("Healthy", [("/spec/replicas", 5)], True, "Synced"),
], ids=["healthy-no-drift", "drifted-field", "health-missing", "drift-says-gone", "drift-of-another-revision"])
def test_an_objects_sync_state_comes_from_its_health_and_the_open_drift_at_the_synced_revision(
        services: Services, environment: tuple[int, int], health: str, items: list[tuple[str, Any]],
        other_revision: bool, sync: str) -> None:
    tree = _synced_and_looked_at(services, environment, health, items, other_revision=other_revision)
    [web] = tree.resources
    assert (web.stage, web.kind, web.name, web.group, web.health, web.sync) == (
        Stage.WORKLOADS, "Deployment", "web/web", "web", health, sync)


def _stage_row(services: Services, environment: tuple[int, int], stage: Stage, summary: dict[str, Any],
               outputs: dict[str, Any] | None = None) -> int:
    env_id, revision_id = environment
    with services.database.session() as session:
        sync = Sync(environment_id=env_id, revision_id=revision_id, trigger=SyncTrigger.POLL,
                    status=SyncLifecycle.SUCCEEDED)
        sync.stage_results.append(SyncStageResult(stage=stage, status=StageStatus.SUCCEEDED, summary=summary,
                                                  outputs=services.secrets.seal_json(outputs) if outputs else None))
        session.add(sync)
        session.flush()
        return sync.id


def test_terraform_resources_are_those_the_last_apply_that_ran_terraform_kept_created_or_changed(
        services: Services, environment: tuple[int, int]) -> None:
    applied = _stage_row(services, environment, Stage.INFRASTRUCTURE, {
        "plan": "+1 ~0 -1", "outcomes": {"aws_instance.new": "created", "aws_instance.old": "deleted"},
        "kept": ["module.net.aws_vpc.main", "data.aws_ami.debian"]})
    _stage_row(services, environment, Stage.INFRASTRUCTURE, {"plan": "skipped: unchanged since sync 1",
                                                             "outcomes": {}})
    with services.database.session() as session:
        tree = resources.tree(services, session, session.get_one(Environment, environment[0]))
    shown = {(r.address, r.group, r.kind, r.name, r.result) for r in tree.resources}
    assert shown == {("aws_instance.new", "", "aws_instance", "new", "created"),
                     ("module.net.aws_vpc.main", "module.net", "aws_vpc", "main", "unchanged"),
                     ("data.aws_ami.debian", "", "data.aws_ami", "debian", "unchanged")}
    assert tree.sources[Stage.INFRASTRUCTURE] == f"applied by sync #{applied}"


def test_ansible_hosts_carry_their_last_result_read_from_the_sealed_outputs(
        services: Services, environment: tuple[int, int]) -> None:
    _stage_row(services, environment, Stage.CONFIGURATION, {"plan": "+0 ~1 -0"}, {"values": {"hosts": {
        "node-1": {"status": "ok", "ok": 4, "changed": 1, "skipped": 0},
        "node-2": {"status": "failed", "ok": 1, "changed": 0, "skipped": 0}}}})
    with services.database.session() as session:
        tree = resources.tree(services, session, session.get_one(Environment, environment[0]))
    assert [(r.address, r.kind, r.result, r.reason) for r in tree.resources] == [
        ("node-1", "host", "ok", "4 ok, 1 changed, 0 skipped"),
        ("node-2", "host", "failed", "1 ok, 0 changed, 0 skipped")]
