"""Drift detection: observe every stage of an environment against its synced revision and report.

`observe` of all three stages (Terraform `plan -detailed-exitcode`, Ansible check mode, the
Kubernetes live diff) gives drift items; they go into one open drift report per environment (a
later observation replaces its items; an observation that finds nothing resolves it). Drift that
someone accepted stays accepted: an item with the same stage, address, field and live value as one
in a report accepted at the synced revision is not reported again (a new live value, or a new
revision, is). With
`selfHeal`, a correcting sync is requested through the reconciler's ordinary gate: an environment
that requires approval gets a correcting plan awaiting approval, never a silent apply. This module
never applies anything itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers import stage as contract
from providers.stage import Assesses, DriftItem, LiveHealth, Stage, StageContext, StageFailed
from reconciler import observations, pipeline, repositories, syncs
from reconciler.errors import Busy
from reconciler.runtime import Services
from reconciler.session import EnvironmentSession, open_session, recorded_outputs
from reconciler.syncs import ACTIVE
from store import DriftItemRow as DriftRow
from store import DriftReport, DriftResolution, DriftStatus, Environment, SyncTrigger, utcnow
from store.queries import open_drift_reports, record_audit

log = logging.getLogger(__name__)


@dataclass
class Observation:
    """What one drift check found, and what it did about it."""

    environment: str
    items: list[DriftItem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health: list[LiveHealth] = field(default_factory=list)
    """What the stages that judge health found live, per object."""
    assessed: bool = False
    report_id: int | None = None
    heal_sync_id: int | None = None
    skipped: str | None = None
    accepted: int = 0
    """Items left out because people accepted exactly that live value at this revision."""


WATCH = "watch"
STARTUP = "startup"
SCHEDULE = "schedule"


def watch_trigger(stage: Stage) -> str:
    """The trigger of a check a live watch asked for: it names the watched stage."""
    return f"{WATCH}:{stage.value}"


def watched_stages(trigger: str) -> frozenset[Stage] | None:
    """The stages a check looks at: only the watched stage for a watch event (its objects changed;
    the others cannot have, as far as the event says — planning Terraform and checking every node
    to confirm one Deployment's drift would cost a minute); every stage otherwise (the schedule, a
    person)."""
    kind, _, stage = trigger.partition(":")
    if kind != WATCH or not stage:
        return None
    try:
        return frozenset({Stage(stage)})
    except ValueError:
        return None


def check(services: Services, environment_id: int, trigger: str = "schedule") -> Observation:
    """Observe the environment's synced revision (the stages `watched_stages` names); record the
    report; ask for a heal when allowed."""
    with services.database.session() as session:
        env = session.get_one(Environment, environment_id)
        observation = Observation(env.name)
        if env.synced_revision is None:
            observation.skipped = "never synced"
            return observation
        if any(s.status in ACTIVE and s.status is not syncs.L.PENDING for s in env.syncs):
            if _asked_by_a_person(trigger):
                raise Busy("a sync of the environment is in progress; the check runs again after it")
            observation.skipped = "a sync is in progress"  # the schedule, the watch, the leader ask again
            return observation
        repository, sha = env.repository, env.synced_revision.sha
        repo_name, env_name = repository.name, env.name
        recorded = recorded_outputs(services, session, env.id)
        root = repositories.checkout(services, repository, sha)
    try:
        with pipeline.locked(services, repo_name, env_name):
            loaded = open_session(services, repo_name, env_name, sha, root, recorded)
            only = watched_stages(trigger)
            if trigger == STARTUP:  # a fresh look at health after a (re)start: the stages that judge it
                only = frozenset(stage for stage in loaded.stages if isinstance(services.stages(stage), Assesses))
            observation.items, observation.errors = _observe_all(services, loaded, only)
            _assess(services, loaded, observation, only)
    except Busy as busy:
        if _asked_by_a_person(trigger):
            raise  # retried by the task: a check someone asked for is not dropped
        observation.skipped = str(busy)
        return observation
    policy = loaded.repo.sync_policy(env_name)
    heal = record(services, environment_id, observation, policy.self_heal, trigger, observed=only,
                  stale_after=2 * policy.drift_interval.total_seconds())
    if heal is not None:
        services.queue.plan(heal)
        observation.heal_sync_id = heal
    return observation


def _observe_all(services: Services, loaded: EnvironmentSession,
                 only: frozenset[Stage] | None = None) -> tuple[list[DriftItem], list[str]]:
    items: list[DriftItem] = []
    errors: list[str] = []
    for stage in loaded.stages:
        if only is not None and stage not in only:
            continue
        context = loaded.context(stage)
        if context is None:
            continue
        found, error = observe_stage(services.stages(stage), context)
        items.extend(found)
        if error is not None:
            errors.append(f"{stage.value}: {error}")
    return items, errors


def _asked_by_a_person(trigger: str) -> bool:
    """Not the schedule, a live watch or a startup look — those ask again on their own."""
    return trigger not in (SCHEDULE, STARTUP) and watched_stages(trigger) is None


def _assess(services: Services, loaded: EnvironmentSession, observation: Observation,
            only: frozenset[Stage] | None) -> None:
    """Per object health from the stages that can judge it (Kubernetes: kstatus of the live
    objects; a missing one is Missing)."""
    for stage in loaded.stages:
        provider = services.stages(stage)
        if (only is not None and stage not in only) or not isinstance(provider, Assesses):
            continue
        context = loaded.context(stage)
        if context is None:
            continue
        observation.assessed = True
        try:
            observation.health.extend(provider.assess(context))
        except Exception as error:
            observation.errors.append(f"{stage.value}: health not judged: {error}")


def observe_stage(stage: contract.StageProvider, context: StageContext[Any]) -> tuple[list[DriftItem], str | None]:
    """One stage's drift items and, when it could not look everywhere, why — with what it did find
    (one unreachable host leaves the other hosts' drift in the report)."""
    try:
        return stage.observe(context), None
    except StageFailed as error:
        return error.drift, str(error)
    except Exception as error:
        return [], str(error)


def record(services: Services, environment_id: int, observation: Observation, self_heal: bool,
           trigger: str, *, observed: frozenset[Stage] | None = None, stale_after: float | None = None) -> int | None:
    """Keep the observation as the environment's open drift report (or resolve it when clean); the id
    of a correcting sync to queue when `self_heal` asked for one. An observation of some stages
    (`observed`) replaces only their items: the report keeps what the others last found."""
    with services.database.session() as session:
        env = session.get_one(Environment, environment_id)
        observations.record(session, env, observation.health, observation.errors, assessed=observation.assessed,
                            stale_after=stale_after)
        open_reports = list(open_drift_reports(session, env.id))
        accepted = _accepted(session, env)
        fresh = [item for item in observation.items if _key(item.stage.value, item.address, item.field, item.live)
                 not in accepted]
        observation.accepted, observation.items = len(observation.items) - len(fresh), fresh
        kept = [] if observed is None else [
            DriftItem(row.stage, row.address, row.field, row.desired, row.live)
            for report in open_reports if report.revision_id == env.synced_revision_id
            for row in report.items if row.stage not in observed]
        if not observation.items and not kept:
            for report in open_reports:
                report.status, report.resolved_at = DriftStatus.RESOLVED, utcnow()
                report.resolution = report.resolution or DriftResolution.RESYNCED
            return None
        found = open_reports[-1] if open_reports else None
        if found is None or found.revision_id != env.synced_revision_id:
            assert env.synced_revision_id is not None
            found = DriftReport(environment_id=env.id, revision_id=env.synced_revision_id)
            session.add(found)
        report = found
        report.items = [DriftRow(stage=i.stage, address=i.address, field=i.field,
                                 desired=_json(i.desired), live=_json(i.live)) for i in [*kept, *observation.items]]
        session.flush()
        observation.report_id = report.id
        record_audit(session, actor="tidegate", action="drift.reported", target=f"{env.repository.name}/{env.name}",
                     details={"items": len(observation.items), "trigger": trigger, "report_id": report.id})
        if not self_heal or env.auto_sync_paused or env.synced_revision is None:
            return None
        sync, created = syncs.request(session, env, env.synced_revision, SyncTrigger.DRIFT)
        session.flush()
        return sync.id if created else None


def _accepted(session: Session, env: Environment) -> set[tuple[str, str, str, str]]:
    """The items of every report accepted at the environment's synced revision."""
    rows = session.scalars(select(DriftRow).join(DriftReport).where(
        DriftReport.environment_id == env.id, DriftReport.revision_id == env.synced_revision_id,
        DriftReport.resolution == DriftResolution.ACCEPTED))
    return {_key(row.stage.value, row.address, row.field, row.live) for row in rows}


def _key(stage: str, address: str, field: str, live: Any) -> tuple[str, str, str, str]:
    return stage, address, field, json.dumps(_json(live), sort_keys=True)


def _json(value: Any) -> Any:
    """Drift values as JSON (stage providers already masked secrets)."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
