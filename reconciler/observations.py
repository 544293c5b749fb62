"""What Tidegate last saw of each environment's live world, and whether that still counts.

An environment's health is a claim about the live world, so it is only as good as the last look.
A drift check records an observation (per object health from the stages that can judge it, and
why it could not see everything); a sync's health wait counts as a look too. When Tidegate
starts (`tidegate up`, a worker taking the live watches over) every environment is asked for a
fresh look, and until one lands its health is `Unknown` — never the `Healthy` of a world that may
be gone. An observation older than `stale_after` (two drift intervals) is stale: `Unknown` again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import LiveHealth
from store import Environment, Health, Observation, utcnow

_WORST_FIRST = (Health.DEGRADED, Health.MISSING, Health.UNKNOWN, Health.PROGRESSING, Health.SUSPENDED,
                Health.HEALTHY)
NOT_LOOKED = "not observed since Tidegate started"


def worst(healths: Iterable[str]) -> Health:
    """The environment's health from its objects': the worst one (none at all: Healthy)."""
    found = {Health(word) for word in healths}
    return next((health for health in _WORST_FIRST if health in found), Health.HEALTHY)


@dataclass(frozen=True)
class Observed:
    """How readers show an environment's health: the word, when it was last seen, and why the
    word is Unknown or what the last look could not see."""

    health: Health
    observed_at: datetime | None
    reason: str = ""


def _row(session: Session, env: Environment) -> Observation:
    row = env.observation
    if row is None:
        row = Observation(environment_id=env.id, health=env.health, error="", objects=[])
        session.add(row)
        env.observation = row
    return row


def record(session: Session, env: Environment, found: Sequence[LiveHealth], errors: Sequence[str], *,
           assessed: bool, stale_after: float | None) -> Observation:
    """Keep a drift check's look: per object health, the environment's (worst of them; Unknown when
    a stage that judges health could not look), and the errors."""
    row = _row(session, env)
    row.observed_at = utcnow()
    row.stale_after = stale_after
    row.error = "\n".join(errors)
    row.objects = [{"address": item.address, "health": item.health, "reason": item.reason, "group": item.group}
                   for item in found]
    if assessed:
        row.health = worst(item.health for item in found) if not errors else Health.UNKNOWN
        env.health = row.health
    return row


def seen_by_sync(session: Session, env: Environment, health: Health) -> None:
    """A sync's health wait just read the live objects: that is a look too."""
    row = _row(session, env)
    row.observed_at, row.health = utcnow(), health


def request(session: Session, environments: Iterable[Environment] | None = None) -> int:
    """Ask for a fresh look at every environment (or those given): their health is Unknown until
    one lands. Returns how many were asked."""
    envs = list(environments) if environments is not None else list(session.scalars(select(Environment)))
    now = utcnow()
    for env in envs:
        row = _row(session, env)
        row.requested_at = now
        env.health = Health.UNKNOWN
    return len(envs)


def waiting(session: Session) -> list[int]:
    """Synced environments asked for a look that none has given yet."""
    query = (select(Observation.environment_id).join(Environment)
             .where(Environment.synced_revision_id.is_not(None), Observation.requested_at.is_not(None),
                    (Observation.observed_at.is_(None)) | (Observation.observed_at < Observation.requested_at)))
    return list(session.scalars(query))


def observed(env: Environment, now: datetime | None = None) -> Observed:
    """The environment's health as readers show it."""
    row = env.observation
    if row is None:
        return Observed(env.health, None)
    if row.requested_at is not None and (row.observed_at is None or _aware(row.observed_at) < _aware(row.requested_at)):
        return Observed(Health.UNKNOWN, row.observed_at, NOT_LOOKED)
    now = now or utcnow()
    if row.observed_at is not None and row.stale_after and \
            _aware(now) - _aware(row.observed_at) > timedelta(seconds=row.stale_after):
        return Observed(Health.UNKNOWN, row.observed_at,
                        f"stale: not observed for more than {row.stale_after:g}s (two drift intervals)")
    return Observed(env.health, row.observed_at, row.error)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)
