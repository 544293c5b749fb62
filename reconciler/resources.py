"""What an environment manages now, object by object: the facts of the dashboard's live resource tree.

Per stage, what the last look and the last apply know, without talking to any target:

- workloads: every desired Kubernetes object of the last observation (`Observation.objects`, written
  by each drift check and live-watch look), with its kstatus health and its workload;
- infrastructure: the Terraform resources the last apply that ran Terraform left in its state (its
  outcomes and the addresses it kept unchanged, `summary["kept"]`); Terraform judges no health;
- configuration: each Ansible host with the result of the last apply (`outputs["hosts"]`).

Sync state per object comes from the environment's open drift report at its synced revision: an
object with a drift item is `OutOfSync`; one whose item says it is not there (field `/`, nothing
live) is `Missing`, as is a Kubernetes object whose health is Missing; everything else `Synced`.

`live_object` is the one call that reaches a target: one object a person opened, read through the
stage's `ReadsLive` (Secret values masked by the provider).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import ReadsLive, Stage
from reconciler import repositories
from reconciler.runtime import Services
from reconciler.session import open_session, recorded_outputs
from store import DriftItemRow, Environment, Health, StageStatus, Sync, SyncStageResult
from store.queries import open_drift_reports
from store.redaction import redact

SYNCED, OUT_OF_SYNC, MISSING = "Synced", "OutOfSync", "Missing"
LOOKBACK = 20
"""Stage results searched, newest first, for the last one that ran the stage (not skipped)."""


@dataclass(frozen=True)
class Resource:
    """One managed thing in the tree."""

    stage: Stage
    address: str
    kind: str
    """`Deployment`, `aws_instance`, `host`: what the icon shows."""
    name: str
    group: str
    """The branch it hangs from: a workload, a Terraform module (`` for the root module), nothing for a host."""
    sync: str
    health: str | None = None
    reason: str = ""
    result: str | None = None
    """What the last apply did to it (`created`, `unchanged`, …; a host's `ok`, `failed`, `unreachable`)."""
    drifted: list[str] = field(default_factory=list)
    """The fields its open drift items name."""


@dataclass(frozen=True)
class Tree:
    """Every stage's resources, and where each stage's list comes from."""

    resources: list[Resource]
    observed_at: datetime | None
    sources: dict[Stage, str]
    """Per stage, in words: `observed …`, `sync #N`, or why nothing is known."""


def tree(services: Services, session: Session, env: Environment) -> Tree:
    drift = _drift(session, env)
    observed = env.observation
    workloads = _workloads(observed.objects if observed is not None else None, drift)
    infrastructure, infra_sync = _infrastructure(session, env, drift)
    configuration, conf_sync = _configuration(services, session, env, drift)
    sources = {
        Stage.INFRASTRUCTURE: f"applied by sync #{infra_sync}" if infra_sync else "no apply of Terraform recorded",
        Stage.CONFIGURATION: f"last run by sync #{conf_sync}" if conf_sync else "no Ansible run recorded",
        Stage.WORKLOADS: "observed live" if workloads else "not observed yet",
    }
    return Tree([*infrastructure, *configuration, *workloads], observed.observed_at if observed else None, sources)


def _drift(session: Session, env: Environment) -> dict[tuple[Stage, str], list[DriftItemRow]]:
    """The open drift items at the synced revision, by (stage, address)."""
    found: dict[tuple[Stage, str], list[DriftItemRow]] = {}
    for report in open_drift_reports(session, env.id):
        if report.revision_id != env.synced_revision_id:
            continue
        for item in report.items:
            found.setdefault((item.stage, item.address), []).append(item)
    return found


def _sync_state(items: Iterable[DriftItemRow], health: str | None = None) -> str:
    listed = list(items)
    if health == Health.MISSING.value or any(item.field in ("/", "") and item.live is None for item in listed):
        return MISSING
    return OUT_OF_SYNC if listed else SYNCED


def _workloads(objects: Any, drift: Mapping[tuple[Stage, str], list[DriftItemRow]]) -> list[Resource]:
    out = []
    for raw in objects if isinstance(objects, list) else []:
        if not isinstance(raw, dict) or not isinstance(raw.get("address"), str):
            continue
        address = raw["address"]
        parts = address.split("/", 3)
        kind, name = (parts[1], f"{parts[2]}/{parts[3]}" if parts[2] else parts[3]) if len(parts) == 4 \
            else ("object", address)
        items = drift.get((Stage.WORKLOADS, address), [])
        health = str(raw.get("health") or "") or None
        out.append(Resource(Stage.WORKLOADS, address, kind, name, str(raw.get("group") or ""),
                            _sync_state(items, health), health, str(raw.get("reason") or ""),
                            drifted=[item.field for item in items]))
    return sorted(out, key=lambda r: (r.group, r.kind, r.name))


def _last_run(session: Session, env: Environment, stage: Stage) -> SyncStageResult | None:
    """The newest result of `stage` that ran it (a stage left out as unchanged did not)."""
    query = (select(SyncStageResult).join(Sync)
             .where(Sync.environment_id == env.id, SyncStageResult.stage == stage,
                    SyncStageResult.status.in_((StageStatus.SUCCEEDED, StageStatus.FAILED)))
             .order_by(SyncStageResult.id.desc()).limit(LOOKBACK))
    for row in session.scalars(query):
        summary = row.summary if isinstance(row.summary, dict) else {}
        if not str(summary.get("plan", "")).startswith("skipped"):
            return row
    return None


def _terraform_path(address: str) -> tuple[str, str, str]:
    """(module path, resource type, name) of a Terraform address like `module.net.aws_subnet.a[0]`."""
    parts = address.split(".")
    modules: list[str] = []
    while len(parts) > 2 and parts[0] == "module":
        modules.append(f"module.{parts[1]}")
        parts = parts[2:]
    if parts[0] == "data" and len(parts) > 2:
        parts = [f"data.{parts[1]}", *parts[2:]]
    return ".".join(modules), parts[0], ".".join(parts[1:]) or parts[0]


def _infrastructure(session: Session, env: Environment, drift: Mapping[tuple[Stage, str], list[DriftItemRow]],
                    ) -> tuple[list[Resource], int | None]:
    row = _last_run(session, env, Stage.INFRASTRUCTURE)
    if row is None:
        return [], None
    summary = row.summary if isinstance(row.summary, dict) else {}
    outcomes = {str(k): str(v) for k, v in (summary.get("outcomes") or {}).items()}
    kept = [str(address) for address in summary.get("kept") or [] if isinstance(address, str)]
    results = {**dict.fromkeys(kept, "unchanged"), **outcomes}
    out = []
    for address, result in results.items():
        if result == "deleted":
            continue
        module, kind, name = _terraform_path(address)
        items = drift.get((Stage.INFRASTRUCTURE, address), [])
        out.append(Resource(Stage.INFRASTRUCTURE, address, kind, name, module, _sync_state(items), result=result,
                            drifted=[item.field for item in items]))
    return sorted(out, key=lambda r: (r.group, r.kind, r.name)), row.sync_id


def _configuration(services: Services, session: Session, env: Environment,
                   drift: Mapping[tuple[Stage, str], list[DriftItemRow]]) -> tuple[list[Resource], int | None]:
    query = (select(SyncStageResult).join(Sync)
             .where(Sync.environment_id == env.id, SyncStageResult.stage == Stage.CONFIGURATION,
                    SyncStageResult.outputs.is_not(None))
             .order_by(SyncStageResult.id.desc()).limit(1))
    row = session.scalars(query).first()
    if row is None or row.outputs is None:
        return [], None
    try:
        values = json.loads(services.secrets.unseal(row.outputs)).get("values") or {}
    except (ValueError, AttributeError):
        return [], None
    hosts = values.get("hosts") if isinstance(values, dict) else None
    out = []
    for host, raw in sorted((hosts or {}).items()) if isinstance(hosts, dict) else []:
        data = raw if isinstance(raw, dict) else {}
        items = [item for (stage, address), found in drift.items() if stage is Stage.CONFIGURATION
                 and address.split("/", 1)[0] == host for item in found]
        counts = ", ".join(f"{data[key]} {key}" for key in ("ok", "changed", "skipped") if isinstance(
            data.get(key), int))
        out.append(Resource(Stage.CONFIGURATION, str(host), "host", str(host), "", _sync_state(items),
                            reason=counts, result=str(data.get("status") or "") or None,
                            drifted=[f"{item.address.split('/', 1)[-1]}: {item.field}" for item in items]))
    return out, row.sync_id


@dataclass(frozen=True)
class LiveObject:
    """One object as its target holds it now (None: not there), or why it could not be read."""

    address: str
    body: dict[str, Any] | None = None
    error: str | None = None


def live_object(services: Services, environment_id: int, stage: Stage, address: str) -> LiveObject:
    """Read one object of the environment's synced revision from its target, as a drift check
    would (the recorded outputs of the earlier stages give the connection); no lock is taken.
    Any failure is the answer's `error` (a page shows it), redacted as every log is."""
    provider = services.stages(stage)
    if not isinstance(provider, ReadsLive):
        return LiveObject(address, error=f"the {stage.value} stage cannot show a live object")
    try:
        with services.database.session() as session:
            env = session.get_one(Environment, environment_id)
            if env.synced_revision is None:
                return LiveObject(address, error="the environment was never synced")
            repo_name, env_name, sha = env.repository.name, env.name, env.synced_revision.sha
            recorded = recorded_outputs(services, session, env.id)
            root = repositories.checkout(services, env.repository, sha)
        context = open_session(services, repo_name, env_name, sha, root, recorded).context(stage)
        if context is None:
            return LiveObject(address, error=f"the {stage.value} stage waits for outputs of an earlier stage")
        return LiveObject(address, body=provider.read_live(context, address))
    except Exception as error:
        return LiveObject(address, error=redact(str(error)) or type(error).__name__)
