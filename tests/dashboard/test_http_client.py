"""The CLI's HTTP client against the real API: the same answers as in-process, identity from the token."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.dashboard.world import World
from tidegate.client import ClientError, LocalClient, SyncView
from tidegate.http_client import HttpClient


def _client(client: TestClient, world: World, user: str) -> HttpClient:
    return HttpClient("http://testserver", world.tokens[user], transport=client._transport)


def test_status_history_and_show_come_from_the_api(client: TestClient, world: World) -> None:
    remote = _client(client, world, "vera")
    views = {view.name: view for view in remote.status()}
    assert views["production"].sync_status == "AwaitingApproval"
    waiting = world.ids["pending"]
    assert any(sync.id == waiting for sync in remote.history("infra/production"))
    shown = remote.show_sync(waiting)
    assert shown.status == "awaiting_approval" and shown.fingerprint and shown.plan


def test_approving_over_http_acts_as_the_token_owner(client: TestClient, world: World) -> None:
    waiting = world.ids["pending"]
    with pytest.raises(ClientError, match=r"403.*only an admin"):
        _client(client, world, "otto").approve(waiting, as_user="paula")  # --as cannot borrow a name
    decision = _client(client, world, "paula").approve(waiting)
    assert decision.approved and decision.sync_id == waiting and "1/1" in decision.detail


def test_an_admin_approves_as_another_user_over_http(client: TestClient, world: World) -> None:
    decision = _client(client, world, "root").approve(world.ids["pending"], "on behalf", as_user="paula")
    assert decision.approved


def test_an_unknown_environment_is_a_clear_error(client: TestClient, world: World) -> None:
    with pytest.raises(ClientError, match="unknown environment 'qa'"):
        _client(client, world, "vera").history("qa")


def test_a_busy_store_answer_is_retried_after_the_time_the_server_names() -> None:
    """The server answers 503 + Retry-After when SQLite gave the write lock to a worker (nothing was
    written); the CLI asks again instead of failing. The server here is a transport that answers
    like that twice, since a real store cannot be held busy on cue."""
    answers = iter([httpx.Response(503, json={"detail": "the store is busy"}, headers={"Retry-After": "0"})] * 2
                   + [httpx.Response(200, json=[])])
    seen: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return next(answers)

    http = HttpClient("http://tidegate.test", "token", transport=httpx.MockTransport(server))
    assert http.status() == [] and seen == ["/api/v1/environments"] * 3


def test_history_says_the_same_over_http_as_in_process(client: TestClient, world: World) -> None:
    """Who approved, the commit's subject and a rollback come from the API as the local client reads
    them from the store: `tidegate history` must not depend on where it runs."""
    _client(client, world, "paula").approve(world.ids["pending"], "looks right")
    _client(client, world, "otto").sync("infra/staging", world.old_sha)  # a rollback
    local = LocalClient(world.services, login="vera")
    for environment in ("infra/staging", "infra/production"):
        remote = _client(client, world, "vera").history(environment)
        assert [_said(view) for view in remote] == [_said(view) for view in local.history(environment)]
    rollback, *_ = _client(client, world, "vera").history("infra/staging")
    assert rollback.rollback and rollback.trigger == "manual"
    assert rollback.commit_subject == "Bootstrap staging and production"
    shown = _client(client, world, "vera").show_sync(world.ids["pending"])
    assert shown.approvers == ("paula",) and shown.approved_at is not None
    assert _said(shown) == _said(local.show_sync(world.ids["pending"]))


def _said(view: SyncView) -> tuple[object, ...]:
    return (view.id, view.revision, view.trigger, view.status, view.commit_subject, view.approvers, view.approved_at,
            view.rollback, view.fingerprint)
