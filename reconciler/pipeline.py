"""The environment pipeline: plan every stage → gate → apply stage by stage → record.

`plan_sync` and `apply_sync` are what the Celery tasks run. Each takes the environment's lock (a
Redis lock with a fencing token, renewed while it works), so two workers never plan or apply one
environment at once, and each is idempotent: run twice for the same sync, the second run finds
the sync already past that step and does nothing. An apply that a dead worker left half done is
never repeated: the next worker that picks the sync up fails it and plans again from the live
state (`recover`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import Outcome, Stage, StageContext, StagePlan, StageResult, StalePlan
from reconciler import fingerprints, observations, repositories, syncs
from reconciler.errors import Busy, PlanningFailed, Transient, classify
from reconciler.livelogs import LIMIT, LiveLog
from reconciler.locks import EnvironmentLock, Lease, LockLost
from reconciler.plans import (
    ArtefactRefused,
    EnvironmentPlan,
    Unchanged,
    decode,
    discard_artifacts,
    encode,
    materialize,
    same_changes,
    sha256_hex,
    stage_summary,
)
from reconciler.policies import EffectivePolicy, PolicyUnavailable, effective_policy
from reconciler.promotion import waiting_on
from reconciler.runtime import Services
from reconciler.session import EnvironmentSession, open_session, recorded_outputs
from reconciler.syncs import L
from repo_schema.loader import LoadedRepo
from store import (
    DriftResolution,
    DriftStatus,
    Environment,
    Health,
    Plan,
    Repository,
    Revision,
    SecretKeyError,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
    utcnow,
)
from store.queries import open_drift_reports, record_audit
from store.redaction import remember_all

log = logging.getLogger(__name__)


def lock_name(repository: str, environment: str) -> str:
    return f"{repository}/{environment}"


Loaded = EnvironmentSession
"""The name the pipeline's callers knew: one environment at one revision (reconciler/session.py)."""


@contextmanager
def locked(services: Services, repository: str, environment: str) -> Iterator[Lease]:
    """Hold the environment's lock (renewed in the background) or raise Busy for a later retry."""
    lock = EnvironmentLock(services.redis, lock_name(repository, environment), ttl=services.lock_ttl)
    lease = lock.acquire(services.owner)
    if lease is None:
        holder = lock.current()
        raise Busy(f"environment {repository}/{environment} is locked by {holder[1] if holder else 'another worker'}")
    try:
        with lease.keepalive():
            yield lease
    finally:
        lease.release()


def _names(services: Services, sync_id: int) -> tuple[str, str, SyncLifecycle] | None:
    with services.database.session() as session:
        sync = session.get(Sync, sync_id)
        if sync is None:
            return None
        return sync.environment.repository.name, sync.environment.name, sync.status


# --- planning ------------------------------------------------------------------------------------

def plan_sync(services: Services, sync_id: int) -> None:
    """Plan every stage of the sync's environment at its revision, then gate it."""
    names = _names(services, sync_id)
    if names is None or names[2] not in (L.PENDING, L.PLANNING):
        return
    with locked(services, names[0], names[1]) as lease:
        with services.database.session() as session:
            sync = session.get_one(Sync, sync_id)
            if sync.status not in (L.PENDING, L.PLANNING):
                return
            syncs.transition(sync, L.PLANNING, lease)
        try:
            ready = _plan_locked(services, sync_id, lease)
        except PlanningFailed as failure:
            with services.database.session() as session:
                sync = session.get_one(Sync, sync_id)
                syncs.transition(sync, L.FAILED, lease, error=str(failure))
                log.warning("sync %s failed while planning: %s", sync_id, failure)
                return
    if ready:  # queued once the lock is released, so the apply does not find it held and back off
        services.queue.apply(sync_id)


def _plan_locked(services: Services, sync_id: int, lease: Lease) -> bool:
    """Plan and gate the sync; True when it was approved on the spot and should be applied."""
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        env, revision = sync.environment, _revision(sync)
        repository = env.repository
        root, loaded_repo, invalid = repositories.load_at(services, repository, revision.sha)
        if loaded_repo is None:
            raise PlanningFailed(f"revision {revision.sha[:12]} does not validate:\n{invalid}")
        if env.name not in loaded_repo.environments:
            raise PlanningFailed(f"environment {env.name!r} is not defined at revision {revision.sha[:12]}")
        if sync.trigger is not SyncTrigger.MANUAL:
            reason = waiting_on(session, services, repository, loaded_repo, env.name, revision.sha)
            if reason is not None:
                syncs.transition(sync, L.PENDING, lease, error=f"waiting: {reason}")
                log.info("sync %s waits: %s", sync_id, reason)
                return False
        recorded = recorded_outputs(services, session, env.id)
        repo_name, env_name, sha = repository.name, env.name, revision.sha
        heal = sync.trigger is SyncTrigger.DRIFT
        gate = _gate(services, session, env, sha, loaded_repo)
        skip = fingerprints.skippable(services, session, sync)
    loaded = open_session(services, repo_name, env_name, sha, root, recorded, take_over=heal)
    plan = plan_stages(services, loaded, skip=skip)
    try:
        return _store_plan(services, sync_id, lease, plan, gate, loaded)
    finally:
        discard_artifacts(plan)  # sealed in the store now; the apply writes them back


def _store_plan(services: Services, sync_id: int, lease: Lease, plan: EnvironmentPlan, gate: EffectivePolicy,
                loaded: EnvironmentSession) -> bool:
    """Seal the plan, its saved plan files included, into the store (any worker applies it from
    there), and gate it."""
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        row = Plan(environment_id=sync.environment_id, revision_id=sync.revision_id, fingerprint=plan.fingerprint,
                   stages=plan.summary(), payload=services.secrets.seal(encode(plan, loaded.run.artifacts)))
        session.add(row)
        session.flush()
        sync.plan_id = row.id
        sync.error = None
        _audit_broken_locks(session, sync, plan)
        if gate.required and plan.has_changes:
            syncs.transition(sync, L.AWAITING_APPROVAL, lease)
            record_audit(session, actor="tidegate", action="sync.awaiting_approval", target=_target(sync),
                         details={"fingerprint": plan.fingerprint, "plan_id": row.id,
                                  "rules": [rule.describe() for rule in gate.gating]})
            return False
        syncs.transition(sync, L.APPROVED, lease)
    return True


def _audit_broken_locks(session: Session, sync: Sync, plan: EnvironmentPlan) -> None:
    """Breaking someone's state lock is an act on shared state: the audit log names each lock a
    stage broke while planning (a dead worker's, its holder named in the note) and the sync."""
    for stage, staged in plan.stages.items():
        for note in staged.details.get("broken_locks") or ():
            record_audit(session, actor="tidegate", action="state_lock.broken", target=_target(sync),
                         details={"sync": sync.id, "stage": stage.value, "note": str(note)[:2000]})


def _gate(services: Services, session: Session, env: Environment, sha: str, at_revision: LoadedRepo) -> EffectivePolicy:
    """The approval rules of this sync (the admins' and the repository's at the last applied
    revision): the same `EffectivePolicy` the approval decision judges by."""
    try:
        return effective_policy(services, session, env, sha, at_revision)
    except PolicyUnavailable as error:
        raise PlanningFailed(str(error)) from None


Adapt = Callable[[Stage, StageContext[Any]], StageContext[Any]]
"""How a caller changes a stage's context before planning (a preview: its own workspaces, read-only
credentials, no state lock)."""


def plan_stages(services: Services, loaded: EnvironmentSession, *, adapt: Adapt | None = None,
                errors: dict[Stage, str] | None = None,
                skip: Mapping[Stage, fingerprints.LastApply] | None = None) -> EnvironmentPlan:
    """Every stage in pipeline order; a stage whose inputs are not known yet is deferred, and a stage
    of `skip` whose input fingerprint is still the one its last successful apply recorded is left
    out unplanned (`plan.unchanged`).

    The one way a plan is made, for syncs and previews alike. A sync stops at the first stage that
    cannot plan (its error, transient or not, is raised); a preview passes `errors` and every
    stage's failure is collected there while the others are still planned."""
    plan = EnvironmentPlan(loaded.run.revision)
    for stage in loaded.stages:
        try:
            context = loaded.context(stage)
            if context is None:
                plan.deferred[stage] = loaded.inputs_digest(stage)
                continue
            last = (skip or {}).get(stage)
            inputs = loaded.input_fingerprint(stage) if last is not None else None
            if last is not None and inputs is not None and inputs == last.inputs:
                plan.unchanged[stage] = Unchanged(last.sync_id, inputs)
                log.info("%s: %s not planned: %s", loaded.run.environment, stage.value, plan.unchanged[stage].reason)
                continue
            if adapt is not None:
                context = adapt(stage, context)
            plan.stages[stage] = _guard(stage, lambda s=stage, c=context: services.stages(s).plan(c))
        except Exception as error:  # the sync's caller records or retries it; a preview shows it
            if errors is None:
                raise classify(stage, error) from error
            log.warning("preview of %s: %s failed: %s", loaded.run.environment, stage.value, error)
            errors[stage] = str(error)
    return plan


def _guard(stage: Stage, call: Any) -> Any:
    """Run a provider call; transient failures raise for a retry, others fail the sync with the reason."""
    try:
        return call()
    except Exception as error:  # classified: retried when transient, else recorded on the sync
        raise classify(stage, error) from error


# --- applying ------------------------------------------------------------------------------------

def apply_sync(services: Services, sync_id: int) -> None:
    """Apply an approved sync's plan stage by stage; a sync found mid-apply is recovered, not re-run."""
    names = _names(services, sync_id)
    if names is None or names[2] not in (L.APPROVED, L.APPLYING):
        return
    with locked(services, names[0], names[1]) as lease:
        replacement: int | None = None
        with services.database.session() as session:
            sync = session.get_one(Sync, sync_id)
            if sync.status is L.APPLYING:
                replacement = recover(session, sync, lease)
            elif sync.status is not L.APPROVED:
                return
            else:
                syncs.transition(sync, L.APPLYING, lease)
                record_audit(session, actor="tidegate", action="sync.applying", target=_target(sync),
                             details={"fingerprint": sync.plan.fingerprint if sync.plan else None})
        if replacement is not None:
            services.queue.plan(replacement)
            return
        _apply_locked(services, sync_id, lease)


def recover(session: Session, sync: Sync, lease: Lease) -> int:
    """A sync left `applying` by a worker that died: never apply it again. Fail it, say which stage
    was running, and plan a new sync from the live state (Terraform's state and the cluster tell
    the new plan what the dead worker managed to do)."""
    running = [r.stage.value for r in sync.stage_results if r.status is StageStatus.APPLYING]
    for result in sync.stage_results:
        if result.status in (StageStatus.APPLYING, StageStatus.PENDING):
            result.status = StageStatus.FAILED if result.status is StageStatus.APPLYING else StageStatus.SKIPPED
            result.finished_at = utcnow()
    where = f" during {', '.join(running)}" if running else ""
    unrecorded = UNRECORDED if Stage.INFRASTRUCTURE.value in running else ""
    syncs.transition(sync, L.FAILED, lease, error=f"the worker applying this sync was lost{where}; nothing was "
                     f"applied again: a new sync plans from the live state{unrecorded}")
    env, revision = sync.environment, _revision(sync)
    fresh, _ = syncs.request(session, env, revision, sync.trigger)
    session.flush()
    details: dict[str, object] = {"replacement": fresh.id}
    if unrecorded:
        details["unrecorded"] = unrecorded.lstrip("; ")
    record_audit(session, actor="tidegate", action="sync.recovered", target=_target(sync), details=details)
    return fresh.id


UNRECORDED = ("; its terraform apply was killed and may have created resources it did not record in state "
              "(Terraform cannot know them, so the new plan will not show them): check the cloud account for "
              "resources of this environment that are not in its state")
"""Said of a sync lost during the infrastructure stage: its replacement applies each planned change
once as far as Terraform's state tells, which is not exactly once for what the killed apply did."""


def _apply_locked(services: Services, sync_id: int, lease: Lease) -> None:
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        env, revision = sync.environment, _revision(sync)
        if sync.plan is None or sync.plan.payload is None:
            syncs.transition(sync, L.FAILED, lease, error="approved sync has no plan")
            return
        try:
            plan = decode(services.secrets.unseal(sync.plan.payload))
        except (SecretKeyError, ValueError, KeyError, TypeError) as error:
            _refuse(session, sync, lease, f"the approved plan #{sync.plan.id} cannot be read back from the store "
                    f"({error}): its sealed payload was altered, or every worker does not share one "
                    "TIDEGATE_SECRET_KEY; nothing was applied")
            return
        recorded = recorded_outputs(services, session, env.id)
        repo_name, env_name, sha = env.repository.name, env.name, revision.sha
        heal = sync.trigger is SyncTrigger.DRIFT
        root = repositories.checkout(services, env.repository, sha)
        stages_present = [*plan.stages, *plan.deferred, *plan.unchanged]
        for word in Stage:
            if word in stages_present:
                session.add(SyncStageResult(sync_id=sync.id, stage=word, status=StageStatus.PENDING))
    try:
        loaded = open_session(services, repo_name, env_name, sha, root, recorded, take_over=heal)
    except PlanningFailed as failure:
        _finish_failed(services, sync_id, lease, str(failure), None)
        return
    approval_required = _still_gated(services, sync_id)
    moved: set[Stage] = set()
    """Stages whose recorded outputs this apply changed: the stages that read them are planned again."""
    applied_any = left_out = False
    health: str | None = None
    for stage in loaded.stages:
        approved = plan.stages.get(stage)
        unchanged = plan.unchanged.get(stage)
        if unchanged is not None and _still_unchanged(loaded, stage, unchanged, moved):
            _leave_out(services, sync_id, stage, unchanged)
            left_out = True
            continue
        if approved is None or loaded.reads(stage) & moved:
            try:
                fresh = _replan(services, loaded, stage)
            except Transient as error:  # nothing of this stage ran: a new sync plans it again
                _plan_again(services, sync_id, lease, stage, str(error), first=not applied_any)
                return
            except PlanningFailed as failure:  # recorded here, with the stage's own error
                _finish_failed(services, sync_id, lease, str(failure), stage)
                return
            if fresh is None:
                _finish_failed(services, sync_id, lease, f"{stage.value}: its inputs are still unknown after "
                               f"{', '.join(sorted(s.value for s in loaded.reads(stage)))} applied (check the "
                               "outputs the environment names)", stage)
                return
            if approval_required and ((approved is not None and not same_changes(approved, fresh))
                                      or (unchanged is not None and fresh.has_changes)):
                _ask_again(services, sync_id, lease, plan, stage, fresh, loaded)
                return
            if approved is None:
                _show_deferred_plan(services, sync_id, stage, fresh)
            approved = fresh
        assert approved is not None
        if approved is plan.stages.get(stage):  # as approved: its saved plan file comes from the store
            try:
                approved = materialize(plan, stage, loaded.run.artifacts)
            except ArtefactRefused as refused:
                _refuse_stage(services, sync_id, lease, stage, str(refused))
                return
        result = _apply_stage(services, sync_id, lease, loaded, stage, approved)
        if result.stale:
            _plan_again(services, sync_id, lease, stage, str(result.error), first=not applied_any)
            return
        if not result.succeeded:
            _finish_failed(services, sync_id, lease, f"{stage.value}: {result.error}", stage, result)
            return
        applied_any = applied_any or any(o is not Outcome.unchanged for o in result.outcomes.values())
        health = result.health or health
        if loaded.record(stage, result.outputs):
            moved.add(stage)
    _finish_succeeded(services, sync_id, lease, health, left_out=left_out)


def _still_unchanged(loaded: EnvironmentSession, stage: Stage, unchanged: Unchanged, moved: set[Stage]) -> bool:
    """A stage left out of the plan stays out unless an earlier stage's apply just changed the
    outputs it reads so that its input fingerprint moved (it is then planned now, as a deferred
    stage is, and a gated environment is asked again if that plan has changes)."""
    if not loaded.reads(stage) & moved:
        return True
    try:
        return loaded.input_fingerprint(stage) == unchanged.inputs
    except Exception:  # its context cannot be built now: planning it says why
        return False


def _leave_out(services: Services, sync_id: int, stage: Stage, unchanged: Unchanged) -> None:
    """Record a stage left out, and why, as the sync's result for it (nothing of it ran)."""
    with services.database.session() as session:
        row = _stage_row(session, sync_id, stage)
        row.status = StageStatus.SKIPPED
        row.summary = {"plan": f"skipped: {unchanged.reason}", "counts": {}, "outcomes": {}, "error": None,
                       "skipped": unchanged.reason}


def _superseded(services: Services, sync_id: int) -> str | None:
    with services.database.session() as session:
        return syncs.newer_revision(session, session.get_one(Sync, sync_id))


def _still_gated(services: Services, sync_id: int) -> bool:
    """Whether the sync's environment is gated (a re-planned later stage then asks again); when the
    policy cannot be read, it is taken to be gated."""
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        try:
            return effective_policy(services, session, sync.environment, _revision(sync).sha).required
        except PolicyUnavailable as error:
            log.warning("sync %s: %s; treated as gated", sync_id, error)
            return True


def _replan(services: Services, loaded: EnvironmentSession, stage: Stage) -> StagePlan | None:
    context = loaded.context(stage)
    if context is None:
        return None
    result: StagePlan = _guard(stage, lambda: services.stages(stage).plan(context))
    return result


def _apply_stage(services: Services, sync_id: int, lease: Lease, loaded: EnvironmentSession, stage: Stage,
                 plan: StagePlan) -> StageResult:
    with services.database.session() as session:
        row = _stage_row(session, sync_id, stage)
        if not lease.check():
            raise LockLost(f"lost the environment lock before applying {stage.value}")
        row.status, row.started_at = StageStatus.APPLYING, utcnow()
        session.flush()
        row_id = row.id
    context = loaded.context(stage)
    if context is None:
        return StageResult(stage, {}, succeeded=False, error="inputs unknown")
    inputs = loaded.input_fingerprint(stage)
    artefact = _digest_of(plan)
    with LiveLog(services.database, row_id) as live:  # lines reach the store while the stage runs
        context = replace(context, superseded=lambda: _superseded(services, sync_id), on_line=live,
                          on_progress=live.progress)
        try:
            result: StageResult = services.stages(stage).apply(context, plan)
        except StalePlan as error:  # nothing of the plan was applied: it is planned again
            result = StageResult(stage, {}, succeeded=False, error=f"stale plan: {error}", stale=True)
        except Exception as error:  # never retried blindly: recorded on the stage, the sync fails with it
            result = StageResult(stage, {}, succeeded=False, error=str(classify(stage, error)))
        finally:
            discard_artifacts(plan)
    with services.database.session() as session:
        row = _stage_row(session, sync_id, stage)
        row.status = StageStatus.SUCCEEDED if result.succeeded else StageStatus.FAILED
        row.finished_at = utcnow()
        remember_all(result.outputs.get(name) for name in result.sensitive_outputs)
        if not live.streamed:  # a stage that streamed has its log in the row already, line by line
            row.log = result.log[-LIMIT:]
        row.summary = _result_summary(plan, result, artefact)
        if result.succeeded or result.outputs:  # a failed apply's partial outputs are the truth too
            record: dict[str, Any] = {"values": result.outputs, "sensitive": sorted(result.sensitive_outputs)}
            if result.succeeded and inputs is not None:  # what a later sync compares to leave the stage out
                record[fingerprints.INPUTS_KEY] = inputs
            row.outputs = services.secrets.seal(json.dumps(record, default=str))
    return result


def _result_summary(plan: StagePlan, result: StageResult, artefact: str | None = None) -> dict[str, Any]:
    """What the stage did; `artefact` is the sha256 of the saved plan file it applied (the plan's
    summary has the one approved: they are equal, whichever worker applied)."""
    counts: dict[str, int] = {}
    for outcome in result.outcomes.values():
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
    changed = {address: outcome.value for address, outcome in result.outcomes.items()
               if outcome is not Outcome.unchanged}
    summary: dict[str, Any] = {"plan": plan.summary(), "counts": counts, "outcomes": changed, "error": result.error}
    if stage_keeps_addresses(plan.stage):
        summary["kept"] = sorted(address for address, outcome in result.outcomes.items()
                                 if outcome is Outcome.unchanged)
    if artefact is not None:
        summary["artifact_sha256"] = artefact
    return summary


def stage_keeps_addresses(stage: Stage) -> bool:
    """Whether a stage result's summary lists what the apply left unchanged (`kept`): with its
    outcomes, every resource the stage manages — the dashboard's tree of Terraform resources, which
    no observation reads (Terraform judges no health). Workloads are read live instead, and their
    thousands of objects would weigh on every sync row."""
    return stage is Stage.INFRASTRUCTURE


def _refuse_stage(services: Services, sync_id: int, lease: Lease, stage: Stage, reason: str) -> None:
    """The approved plan's artefact for `stage` is missing or altered: the stage is failed with the
    reason before anything of it ran, the sync fails, and the refusal is audited."""
    with services.database.session() as session:
        row = _stage_row(session, sync_id, stage)
        row.status, row.finished_at = StageStatus.FAILED, utcnow()
        row.summary = {"plan": "", "counts": {}, "outcomes": {}, "error": reason}
        _refuse(session, session.get_one(Sync, sync_id), lease, reason)


def _refuse(session: Session, sync: Sync, lease: Lease, reason: str) -> None:
    for row in sync.stage_results:
        if row.status is StageStatus.PENDING:
            row.status = StageStatus.SKIPPED
    syncs.transition(sync, L.FAILED, lease, error=reason)
    record_audit(session, actor="tidegate", action="plan.refused", target=_target(sync),
                 details={"plan_id": sync.plan_id, "reason": reason[:2000]})
    log.error("sync %s: %s", sync.id, reason)


def _digest_of(plan: StagePlan) -> str | None:
    """The sha256 of the saved plan file about to be applied (None: the stage has none)."""
    if plan.artifact is None or not plan.artifact.is_file():
        return None
    return sha256_hex(plan.artifact.read_bytes())


def _show_deferred_plan(services: Services, sync_id: int, stage: Stage, fresh: StagePlan) -> None:
    """What a stage deferred until an earlier one applied is about to do, in the sync's plan as people
    read it (CLI, API, dashboard): its changes replace "planned after infrastructure applies". The
    sealed plan the sync was approved with is left as it was."""
    with services.database.session(write=True) as session:
        sync = session.get_one(Sync, sync_id)
        if sync.plan is None:
            return
        shown = stage_summary(fresh, str((sync.plan.stages.get(stage.value) or {}).get("fingerprint", "")))
        sync.plan.stages = {**sync.plan.stages, stage.value: {**shown, "planned_after_apply": True}}


def _stage_row(session: Session, sync_id: int, stage: Stage) -> SyncStageResult:
    query = select(SyncStageResult).where(SyncStageResult.sync_id == sync_id,
                                          SyncStageResult.stage == stage)
    row = session.scalars(query).one_or_none()
    if row is None:
        row = SyncStageResult(sync_id=sync_id, stage=stage, status=StageStatus.PENDING)
        session.add(row)
    return row


def _ask_again(services: Services, sync_id: int, lease: Lease, plan: EnvironmentPlan, stage: Stage,
               fresh: StagePlan, loaded: EnvironmentSession) -> None:
    """A re-planned later stage changed its addresses or actions: the old plan is superseded and the
    sync waits for an approval of the new one."""
    plan.stages[stage] = fresh
    plan.deferred.pop(stage, None)
    plan.unchanged.pop(stage, None)
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        if sync.plan is not None:
            sync.plan.superseded = True
        row = Plan(environment_id=sync.environment_id, revision_id=sync.revision_id, fingerprint=plan.fingerprint,
                   stages=plan.summary(), payload=services.secrets.seal(encode(plan, loaded.run.artifacts)))
        session.add(row)
        session.flush()
        sync.plan_id = row.id
        _stage_row(session, sync_id, stage).status = StageStatus.PENDING
        syncs.transition(sync, L.AWAITING_APPROVAL, lease,
                         error=f"{stage.value} changed after the infrastructure applied; approve the new plan")
    discard_artifacts(plan)


def _plan_again(services: Services, sync_id: int, lease: Lease, stage: Stage, error: str, *, first: bool) -> None:
    """The approved plan no longer matches the live state: it is superseded (nothing of it was
    applied) or the sync fails where it stopped, and a new sync plans again from the live state —
    through the gate, so a gated environment is asked to approve the new plan."""
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        if sync.plan is not None:
            sync.plan.superseded = True
        for row in sync.stage_results:
            if row.status is StageStatus.PENDING:
                row.status = StageStatus.SKIPPED
        reason = f"{stage.value}: {error}"
        syncs.transition(sync, L.SUPERSEDED if first else L.FAILED, lease,
                         error=f"{reason}\na new sync plans again from the live state")
        fresh, _ = syncs.request(session, sync.environment, _revision(sync), sync.trigger)
        session.flush()
        record_audit(session, actor="tidegate", action="plan.superseded", target=_target(sync),
                     details={"replacement": fresh.id, "reason": reason[:2000]})
        fresh_id = fresh.id
    services.queue.plan(fresh_id)


def _finish_failed(services: Services, sync_id: int, lease: Lease, error: str, stage: Stage | None,
                   result: StageResult | None = None) -> None:
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        for row in sync.stage_results:
            if row.status is StageStatus.PENDING:
                row.status = StageStatus.SKIPPED
        syncs.transition(sync, L.FAILED, lease, error=error)
        env = sync.environment
        if result is not None and result.health:
            env.health = _health(result.health, Health.DEGRADED)
            observations.seen_by_sync(session, env, env.health)
        record_audit(session, actor="tidegate", action="sync.failed", target=_target(sync),
                     details={"error": error[:2000]})


def _finish_succeeded(services: Services, sync_id: int, lease: Lease, health: str | None, *,
                      left_out: bool = False) -> None:
    """`left_out`: stages were left out unchanged; when none that ran judged health, the health the
    last apply of those stages left stands (a sync that ran no workloads stage did not look)."""
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        syncs.transition(sync, L.SUCCEEDED, lease)
        env = sync.environment
        env.synced_revision_id = sync.revision_id
        if env.desired_revision_id is None or not env.auto_sync_paused:
            env.desired_revision_id = env.desired_revision_id or sync.revision_id
        if health is not None or not left_out:
            env.health = _health(health, Health.HEALTHY)  # as the stages that judge health saw it
            observations.seen_by_sync(session, env, env.health)
        resolution = DriftResolution.HEALED if sync.trigger is SyncTrigger.DRIFT else DriftResolution.RESYNCED
        for report in open_drift_reports(session, env.id):
            report.status, report.resolution, report.resolved_at = DriftStatus.RESOLVED, resolution, utcnow()
        record_audit(session, actor="tidegate", action="sync.succeeded", target=_target(sync))
        dependents = _waiting_dependents(session, env)
    for dependent in dependents:
        services.queue.plan(dependent)


def _waiting_dependents(session: Session, env: Environment) -> list[int]:
    """Pending syncs of the repository's other environments (promotion re-checks them)."""
    query = select(Sync).join(Environment).where(
        Environment.repository_id == env.repository_id, Environment.id != env.id, Sync.status == L.PENDING)
    return [sync.id for sync in session.scalars(query).all()]


def _health(word: str | None, default: Health) -> Health:
    try:
        return Health(word) if word else default
    except ValueError:
        return default


# --- shared look-ups ------------------------------------------------------------------------------

def _revision(sync: Sync) -> Revision:
    if sync.revision is None:
        raise PlanningFailed(f"sync {sync.id} has no revision")
    return sync.revision


def _target(sync: Sync) -> str:
    env = sync.environment
    return f"{env.repository.name}/{env.name}#sync-{sync.id}"


def repository_of(session: Session, environment_id: int) -> Repository:
    return session.get_one(Environment, environment_id).repository
