"""The CLI's HTTP client against the real API: the same answers as in-process, identity from the token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.world import World
from tidegate.client import ClientError
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
    with pytest.raises(ClientError, match="403"):
        _client(client, world, "otto").approve(waiting, user="paula")  # --as cannot borrow a name
    decision = _client(client, world, "paula").approve(waiting, user="ignored")
    assert decision.approved and decision.sync_id == waiting


def test_an_unknown_environment_is_a_clear_error(client: TestClient, world: World) -> None:
    with pytest.raises(ClientError, match="unknown environment 'qa'"):
        _client(client, world, "vera").history("qa")
