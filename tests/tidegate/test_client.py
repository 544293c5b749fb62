"""The local client: writes made again when SQLite gave the write lock to a worker, and who it acts as;
for drift, the local and the HTTP client agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dashboard.identity import issue_token
from reconciler.access import AccessRefused, Permission, local_principal
from reconciler.runtime import Services
from store import Database, DriftItemRow, Stage, StoreBusy, User
from tests.dashboard.conftest import make_app
from tests.support.doubles import RecordingQueue
from tests.support.drift_store import T0, add_open_report, build_drift_store
from tests.support.redis_server import start_redis
from tidegate.client import Client, ClientError, LocalClient, retried_when_busy
from tidegate.http_client import HttpClient
from tidegate.redis_server import EmbeddedRedis, redis_client

DriftClients = tuple[Services, LocalClient, dict[str, HttpClient]]


def test_a_write_that_lost_the_race_is_made_again_until_it_lands() -> None:
    calls: list[str] = []

    @retried_when_busy(attempts=5, pause=0.0)
    def write(name: str) -> str:
        calls.append(name)
        if len(calls) < 3:
            raise StoreBusy("the store is busy: database is locked")
        return f"wrote {name}"

    assert write("sync") == "wrote sync" and calls == ["sync"] * 3


def test_a_store_that_stays_busy_is_reported_after_the_last_attempt() -> None:
    calls = 0

    @retried_when_busy(attempts=4, pause=0.0)
    def write() -> None:
        nonlocal calls
        calls += 1
        raise StoreBusy("the store is busy: database is locked")

    with pytest.raises(StoreBusy):
        write()
    assert calls == 4


def test_without_users_the_local_cli_is_single_user_and_names_itself_with_as(tmp_path: Path) -> None:
    """Single-user mode: the person at the terminal holds the data directory and every permission;
    `--as` only names them (audited `local LOGIN as NAME`). Once users exist it is over."""
    database = Database.embedded(tmp_path)
    database.upgrade()
    with database.session() as session:
        me, named = local_principal(session, "ops", None), local_principal(session, "ops", "paula")
        assert (me.name, me.audit_name, me.can(Permission.APPROVE, "infra/production")) == ("ops", "ops", True)
        assert (named.name, named.audit_name) == ("paula", "local ops as paula")

        session.add(User(name="ops"))
        session.flush()
        with pytest.raises(AccessRefused, match="only an admin"):
            local_principal(session, "ops", "paula")
        assert not local_principal(session, "ops", None).can(Permission.APPROVE, "infra/production")
        with pytest.raises(AccessRefused, match="no enabled Tidegate user named like your login 'eve'"):
            local_principal(session, "eve", None)
    database.dispose()


# --- drift: the local and the HTTP client give the same views and act alike --------------------------

@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def drift_clients(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[DriftClients]:
    """Over one store with drift (tests.support.drift_store): the in-process client as `ops`, and an
    HTTP client per user (`ops`, an admin; `vic`, a viewer) against the real API."""
    services = build_drift_store(tmp_path / "data", redis_client(redis_server.client_url))
    with services.database.session() as session:
        tokens = {name: issue_token(session, session.scalars(select(User).where(User.name == name)).one())[1]
                  for name in ("ops", "vic")}
    with TestClient(make_app(services)) as api:
        yield services, LocalClient(services, login="ops"), {
            name: HttpClient("http://testserver", token, transport=api._transport) for name, token in tokens.items()}
    services.database.dispose()


def test_both_clients_list_the_same_drift_reports(drift_clients: DriftClients) -> None:
    _services, local, http = drift_clients
    for include_resolved in (False, True):
        views = local.drift("staging", include_resolved)
        assert views == http["ops"].drift("infra/staging", include_resolved)
        assert [(v.id, v.status) for v in views] == [(1, "open"), (2, "resolved")][:2 if include_resolved else 1]
    assert [item["stage"] for item in local.drift("staging")[0].items] == ["infrastructure"] * 2 + [
        "configuration"] + ["workloads"] * 2


def test_accepting_and_healing_through_either_client_reads_the_same_afterwards(drift_clients: DriftClients) -> None:
    services, local, http = drift_clients
    sync_id = http["ops"].heal_drift(1)
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == [("plan", sync_id)]
    healing = local.drift("staging")[0]
    assert (healing.resolution, healing.heal_sync_id) == ("healed", sync_id)
    again = add_open_report(services, T0 + timedelta(hours=1), [
        DriftItemRow(stage=Stage.WORKLOADS, address="apps/Deployment/web/web", field="/spec/replicas", desired=3,
                     live=4)])
    http["ops"].accept_drift(again, "load test")  # the comment travels in the request body
    views = local.drift("staging", include_resolved=True)
    assert views == http["ops"].drift("staging", include_resolved=True)
    assert (views[0].id, views[0].resolution, views[0].accepted_by, views[0].accepted_comment) == (
        again, "accepted", "ops", "load test")


@pytest.mark.parametrize("act,message", [
    pytest.param(lambda c: c.accept_drift(9), "no drift report 9", id="unknown"),
    pytest.param(lambda c: c.heal_drift(2), r"drift report 2 is already resolved \(resynced\)", id="resolved"),
])
def test_both_clients_refuse_alike(drift_clients: DriftClients, act: Callable[[Client], object],
                                   message: str) -> None:
    _services, local, http = drift_clients
    for client in (local, http["ops"]):
        with pytest.raises(ClientError, match=message):
            act(client)


def test_a_viewer_may_read_drift_but_not_accept_it(drift_clients: DriftClients) -> None:
    _services, local, http = drift_clients
    assert http["vic"].drift("staging") == local.drift("staging")
    with pytest.raises(ClientError, match="403: vic lacks the operate permission on infra/staging"):
        http["vic"].accept_drift(1)
    with pytest.raises(ClientError, match="vic lacks the operate permission on infra/staging"):
        LocalClient(local.services, login="vic").heal_drift(1)
