"""Recording what an observation found: one open report, resolved when clean, and accepted drift
not reported again until its live value or the revision moves."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from drift.detect import Observation, check, record, watch_trigger, watched_stages
from providers.stage import DriftItem, Stage
from reconciler.errors import Busy
from reconciler.runtime import Services
from reconciler.status import status_of
from store import (
    DriftReport,
    DriftResolution,
    DriftStatus,
    Environment,
    Sync,
    SyncLifecycle,
    SyncStatus,
    SyncTrigger,
    utcnow,
)


def _synced(services: Services, environment: tuple[int, int]) -> None:
    with services.database.session() as session:
        env = session.get_one(Environment, environment[0])
        env.synced_revision_id = env.desired_revision_id = environment[1]


def _observe(services: Services, environment: tuple[int, int], *items: DriftItem) -> Observation:
    observation = Observation("production", items=list(items))
    assert record(services, environment[0], observation, self_heal=False, trigger="schedule") is None
    return observation


def _replicas(live: Any) -> DriftItem:
    return DriftItem(Stage.WORKLOADS, "apps/v1/Deployment/web/web", "spec.replicas", 3, live)


def _state(services: Services, environment: tuple[int, int]) -> tuple[SyncStatus, list[tuple[DriftStatus, Any]]]:
    with services.database.session() as session:
        reports = session.scalars(select(DriftReport).order_by(DriftReport.id)).all()
        return (status_of(session, session.get_one(Environment, environment[0])),
                [(report.status, [row.live for row in report.items]) for report in reports])


def _accept_open_report(services: Services) -> None:
    """What the dashboard's accept action does to the report."""
    with services.database.session() as session:
        report = session.scalars(select(DriftReport).where(DriftReport.status == DriftStatus.OPEN)).one()
        report.status, report.resolution, report.resolved_at = (DriftStatus.RESOLVED, DriftResolution.ACCEPTED,
                                                                utcnow())


def test_drift_opens_one_report_that_a_clean_observation_resolves(services: Services,
                                                                  environment: tuple[int, int]) -> None:
    _synced(services, environment)
    first = _observe(services, environment, _replicas(5))
    again = _observe(services, environment, _replicas(6))
    assert first.report_id == again.report_id
    assert _state(services, environment) == (SyncStatus.DRIFTED, [(DriftStatus.OPEN, [6])])
    _observe(services, environment)
    assert _state(services, environment) == (SyncStatus.SYNCED, [(DriftStatus.RESOLVED, [6])])


def test_accepted_drift_is_not_reported_again_until_its_live_value_moves(services: Services,
                                                                        environment: tuple[int, int]) -> None:
    _synced(services, environment)
    _observe(services, environment, _replicas(5))
    _accept_open_report(services)

    same = _observe(services, environment, _replicas(5))
    assert (same.accepted, same.report_id) == (1, None)
    assert _state(services, environment) == (SyncStatus.SYNCED, [(DriftStatus.RESOLVED, [5])])

    moved = _observe(services, environment, _replicas(7))
    assert moved.accepted == 0 and moved.report_id is not None
    assert _state(services, environment) == (SyncStatus.DRIFTED, [(DriftStatus.RESOLVED, [5]),
                                                                  (DriftStatus.OPEN, [7])])


def _bucket(live: Any) -> DriftItem:
    return DriftItem(Stage.INFRASTRUCTURE, "aws_s3_bucket.artifacts", "tags.team", "platform", live)


@pytest.mark.parametrize(("trigger", "only"), [
    ("watch:workloads", frozenset({Stage.WORKLOADS})),
    ("watch:configuration", frozenset({Stage.CONFIGURATION})),
    ("watch", None), ("schedule", None), ("manual", None), ("watch:nonsense", None),
], ids=["workloads-watch", "configuration-watch", "legacy-watch", "schedule", "manual", "unknown-stage"])
def test_a_watch_event_checks_only_the_watched_stage_everything_else_checks_all(
        trigger: str, only: frozenset[Stage] | None) -> None:
    assert watched_stages(trigger) == only
    if only is not None:
        assert watched_stages(watch_trigger(next(iter(only)))) == only


def test_a_check_of_the_watched_stage_keeps_what_the_schedule_found_in_the_others(
        services: Services, environment: tuple[int, int]) -> None:
    _synced(services, environment)
    _observe(services, environment, _bucket("someone"), _replicas(5))
    healed = Observation("production")  # the watch's check: the Deployment is back, the bucket not looked at
    record(services, environment[0], healed, self_heal=False, trigger="watch:workloads",
           observed=frozenset({Stage.WORKLOADS}))
    assert _state(services, environment) == (SyncStatus.DRIFTED, [(DriftStatus.OPEN, ["someone"])])
    record(services, environment[0], Observation("production"), self_heal=False, trigger="schedule")
    assert _state(services, environment) == (SyncStatus.SYNCED, [(DriftStatus.RESOLVED, ["someone"])])


@pytest.mark.parametrize(("trigger", "retried"), [
    ("test", True), ("manual", True), ("schedule", False), ("startup", False), ("watch:workloads", False),
], ids=["person", "manual", "schedule", "startup", "watch"])
def test_a_check_asked_for_while_a_sync_runs_is_retried_unless_something_asks_again_anyway(
        services: Services, environment: tuple[int, int], trigger: str, retried: bool) -> None:
    _synced(services, environment)
    with services.database.session() as session:
        session.add(Sync(environment_id=environment[0], revision_id=environment[1], trigger=SyncTrigger.POLL,
                         status=SyncLifecycle.APPLYING))
    if retried:
        with pytest.raises(Busy, match="a sync of the environment is in progress"):
            check(services, environment[0], trigger)
    else:
        assert check(services, environment[0], trigger).skipped == "a sync is in progress"
