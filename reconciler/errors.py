"""Which failures are worth retrying: the task layer retries `Transient`, records everything else.

Transient: the environment lock is held, the Terraform backend or its lock is busy or unreachable,
the Kubernetes API answered 5xx/429 after the client's own retries, git is unreachable. Never
transient: a revision that does not validate or render, a Terraform configuration error, a host
that fails a task — retrying those only repeats the error.
"""

from __future__ import annotations

from providers.stage import StageName


class Transient(RuntimeError):
    """Try again later, with backoff; nothing was changed."""


class Busy(Transient):
    """Another worker holds the environment's lock."""


class PlanningFailed(RuntimeError):
    """The sync cannot go on: validation, rendering or a provider's plan failed; recorded on the sync."""


_TRANSIENT_NAMES = {"StoreBusy", "BackendUnreachable", "StateLocked", "SourceUnreachable", "ServerError",
                    "TooManyRequests", "ConnectionError", "ApiUnavailable"}


def classify(stage: StageName, error: BaseException) -> Exception:
    """A provider's exception as `Transient` (retry) or `PlanningFailed` (record, stop)."""
    if isinstance(error, (Transient, PlanningFailed)):
        return error
    names = {kind.__name__ for kind in type(error).__mro__}
    message = f"{stage.value}: {error}"
    status = getattr(error, "status", None)
    if (names & _TRANSIENT_NAMES or isinstance(error, (ConnectionError, TimeoutError))
            or (isinstance(status, int) and (status == 429 or status >= 500))):
        return Transient(message)
    return PlanningFailed(message)
