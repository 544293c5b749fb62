"""An environment's health is only as good as the last look at the live world."""

from __future__ import annotations

from datetime import timedelta

import pytest

from providers.stage import LiveHealth
from reconciler import observations
from reconciler.runtime import Services
from store import Environment, Health, utcnow


def _look(services: Services, env_id: int, *healths: str, errors: tuple[str, ...] = (),
          stale_after: float | None = 600.0) -> None:
    found = [LiveHealth(f"apps/Deployment/web/{index}", word, "", "web") for index, word in enumerate(healths)]
    with services.database.session() as session:
        observations.record(session, session.get_one(Environment, env_id), found, list(errors), assessed=True,
                            stale_after=stale_after)


def _seen(services: Services, env_id: int, *, later: float = 0.0) -> observations.Observed:
    with services.database.session() as session:
        return observations.observed(session.get_one(Environment, env_id), utcnow() + timedelta(seconds=later))


@pytest.mark.parametrize(("healths", "expected"), [
    (("Healthy", "Healthy"), Health.HEALTHY),
    (("Healthy", "Missing"), Health.MISSING),
    (("Progressing", "Missing", "Degraded"), Health.DEGRADED),
    (("Suspended", "Progressing"), Health.PROGRESSING),
    ((), Health.HEALTHY),
], ids=["all-healthy", "one-missing", "degraded-wins", "progressing-over-suspended", "nothing-managed"])
def test_a_look_gives_the_environment_the_worst_health_of_its_objects(
        services: Services, environment: tuple[int, int], healths: tuple[str, ...], expected: Health) -> None:
    _look(services, environment[0], *healths)
    seen = _seen(services, environment[0])
    assert seen.health is expected and seen.observed_at is not None and seen.reason == ""


def test_after_a_restart_health_is_unknown_until_tidegate_looks_again(
        services: Services, environment: tuple[int, int]) -> None:
    _look(services, environment[0], "Healthy")
    with services.database.session() as session:
        assert observations.request(session) == 1
    assert _seen(services, environment[0]) == observations.Observed(
        Health.UNKNOWN, _seen(services, environment[0]).observed_at, observations.NOT_LOOKED)
    _look(services, environment[0], "Missing")
    assert _seen(services, environment[0]).health is Health.MISSING


def test_a_sync_that_waited_for_health_counts_as_a_look(services: Services, environment: tuple[int, int]) -> None:
    with services.database.session() as session:
        observations.request(session)
    with services.database.session() as session:
        env = session.get_one(Environment, environment[0])
        env.health = Health.HEALTHY
        observations.seen_by_sync(session, env, Health.HEALTHY)
    assert _seen(services, environment[0]).health is Health.HEALTHY


def test_an_old_look_is_stale_after_two_drift_intervals(services: Services, environment: tuple[int, int]) -> None:
    _look(services, environment[0], "Healthy", stale_after=600.0)
    assert _seen(services, environment[0], later=590).health is Health.HEALTHY
    stale = _seen(services, environment[0], later=601)
    assert stale.health is Health.UNKNOWN and stale.reason.startswith("stale: not observed for more than 600s")


def test_a_look_that_could_not_see_says_why_and_claims_no_health(
        services: Services, environment: tuple[int, int]) -> None:
    _look(services, environment[0], "Healthy", errors=("workloads: the cluster refused the credentials (401)",))
    seen = _seen(services, environment[0])
    assert seen.health is Health.UNKNOWN and "refused the credentials" in seen.reason
