"""The live-watch leader asks for a look at every environment whose health waits for one."""

from __future__ import annotations

from drift.live import LiveWatches
from providers.stage import LiveHealth
from reconciler import observations
from reconciler.runtime import Services
from store import Environment, Health
from tests.support.doubles import RecordingQueue


def _synced(services: Services, env_id: int, revision_id: int) -> None:
    with services.database.session() as session:
        env = session.get_one(Environment, env_id)
        env.synced_revision_id = env.desired_revision_id = revision_id


def test_a_new_leader_looks_at_every_synced_environment_without_forgetting_its_health(
        services: Services, environment: tuple[int, int]) -> None:
    _synced(services, *environment)
    _look(services, environment[0])
    queue = services.queue
    assert isinstance(queue, RecordingQueue)

    LiveWatches(services).look_again()

    assert ("drift", environment[0]) in queue.sent
    with services.database.session() as session:
        assert observations.observed(session.get_one(Environment, environment[0])).health is Health.HEALTHY


def test_after_up_asks_for_a_look_the_leader_asks_until_one_lands(
        services: Services, environment: tuple[int, int]) -> None:
    _synced(services, *environment)
    queue = services.queue
    assert isinstance(queue, RecordingQueue)
    with services.database.session() as session:
        observations.request(session)  # `tidegate up` on an existing data directory
    watches = LiveWatches(services)

    assert watches.ask_for_looks(now=100.0) == [environment[0]]
    assert watches.ask_for_looks(now=110.0) == []  # asked 10 s ago: a check may still be on its way
    assert watches.ask_for_looks(now=131.0) == [environment[0]]  # skipped (a sync ran): ask again
    _look(services, environment[0])
    assert watches.ask_for_looks(now=200.0) == []
    assert [call for call in queue.sent if call[0] == "drift"] == [("drift", environment[0])] * 2


def _look(services: Services, env_id: int) -> None:
    with services.database.session() as session:
        observations.record(session, session.get_one(Environment, env_id),
                            [LiveHealth("apps/Deployment/web/web", "Healthy")], [], assessed=True, stale_after=600)
