"""Which failures are worth retrying: the task layer retries `Transient`, records everything else.

Transient: the environment lock is held, the Terraform backend or its lock is busy or unreachable,
the Kubernetes API answered 5xx/429 after the client's own retries, git is unreachable. Never
transient: a revision that does not validate or render, a Terraform configuration error, a host
that fails a task — retrying those only repeats the error.
"""

from __future__ import annotations

from providers import stage as contract
from providers.stage import Stage
from reconciler.sources.git import SourceUnreachable
from store import StoreBusy


class Transient(contract.Transient):
    """Try again later, with backoff; nothing was changed."""


class Busy(Transient):
    """Another worker holds the environment's lock."""


class PlanningFailed(RuntimeError):
    """The sync cannot go on: validation, rendering or a provider's plan failed; recorded on the sync."""


_TRANSIENT: tuple[type[BaseException], ...] = (contract.Transient, StoreBusy, SourceUnreachable, ConnectionError,
                                                TimeoutError)
"""By class, never by name or message: the stage contract's Transient, a busy store, an unreachable
Git remote, a connection that failed or timed out."""


def classify(stage: Stage, error: BaseException) -> Exception:
    """A provider's exception as `Transient` (retry) or `PlanningFailed` (record, stop)."""
    if isinstance(error, (Transient, PlanningFailed)):
        return error
    message = f"{stage.value}: {error}"
    if isinstance(error, _TRANSIENT):
        return Transient(message)
    return PlanningFailed(message)
