"""`tidegate diff ENV`: argocd's exit codes, nothing stored, one sentence for a refusal — in-process and
over the real API (`GET /environments/{repo}/{env}/diff`, which a viewer may call), over a real store
and the example repo in a real git repository, planned through the preview path
(`previews.plan_environment`) by stand-in stage providers. What it prints is in test_cli_golden."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from dashboard.api import DIFF_RETRY_AFTER, DIFF_SLOTS
from dashboard.identity import issue_token
from providers.stage import Change, Stage, StageContext, StagePlan
from reconciler.runtime import Services
from store import AuditEvent, Plan, Sync, User
from tests.dashboard.conftest import make_app
from tests.support.cli_world import api_client
from tests.support.diff_world import CHANGES, plan_with
from tidegate import cli_diff
from tidegate.cli import app
from tidegate.client import Client, LocalClient

ClientOf = Callable[[Services], Iterator[Client]]
CLIENTS = [pytest.param(lambda services: iter([LocalClient(services, login="ops")]), id="in-process"),
           pytest.param(lambda services: api_client(services, "vic"), id="over-http-as-a-viewer")]


@pytest.fixture(params=CLIENTS)
def client_of(request: pytest.FixtureRequest) -> ClientOf:
    return request.param  # type: ignore[no-any-return]


def run_diff(services: Services, client_of: ClientOf, *args: str, changes: dict[Stage, list[Change]] = CHANGES,
             failing: Stage | None = None) -> Result:
    plan_with(services, changes, failing)
    with pytest.MonkeyPatch.context() as patch:
        connected = client_of(services)
        patch.setattr(cli_diff, "client", lambda: next(connected))
        return CliRunner().invoke(app, ["diff", *args])


def rows(services: Services) -> tuple[int, int, int]:
    with services.database.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0  # type: ignore[return-value]
                     for model in (Sync, Plan, AuditEvent))


@pytest.mark.parametrize("changes,failing,code,head_line", [
    pytest.param({stage: [] for stage in Stage}, None, 0, "in sync, a sync would change nothing", id="in-sync"),
    pytest.param(CHANGES, None, 1, "a sync would make 2 changes", id="changes"),
    pytest.param(CHANGES, Stage.CONFIGURATION, 2, "could not be planned in full", id="a-stage-fails"),
])
def test_diff_exit_code_says_whether_a_sync_would_change_anything_and_nothing_is_stored(
        diff_staging: tuple[Services, str], client_of: ClientOf, changes: dict[Stage, list[Change]],
        failing: Stage | None, code: int, head_line: str) -> None:
    services, head = diff_staging
    before = rows(services)
    result = run_diff(services, client_of, "staging", changes=changes, failing=failing)
    assert result.exit_code == code
    assert result.stdout.splitlines()[0] == f"infra/staging at {head[:12]}: {head_line}"
    if failing:
        assert "configuration: error: no route to host" in result.stdout.splitlines()
        assert "  create   aws_instance.node[1]" in result.stdout.splitlines(), "the other stages still shown"
    assert rows(services) == before, "nothing stored: no sync, no plan, no audit entry"


def test_diff_of_an_unknown_environment_is_one_sentence_and_exit_2(diff_staging: tuple[Services, str],
                                                                    client_of: ClientOf) -> None:
    result = run_diff(diff_staging[0], client_of, "nowhere")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "error unknown environment 'nowhere'\n")


def test_the_api_answers_409_when_the_desired_revision_cannot_be_planned(diff_staging: tuple[Services, str]) -> None:
    services, _ = diff_staging
    with services.database.session() as session:
        session.scalars(select(Sync)).first().environment.desired_revision.sha = "0" * 40  # type: ignore[union-attr]
    result = run_diff(services, CLIENTS[1].values[0], "staging")  # type: ignore[arg-type]
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("error 409: revision 000000000000 could not be read: commit 0000")


class Held:
    """A stage whose plan waits until released (a diff in progress on the server)."""

    def __init__(self, name: Stage, started: threading.Semaphore, release: threading.Event) -> None:
        self.name, self.started, self.release = name, started, release

    def plan(self, context: StageContext[Any]) -> StagePlan:
        if self.name is Stage.INFRASTRUCTURE:
            self.started.release()
            self.release.wait(30)
        return StagePlan(self.name, [], digest="")


def test_the_api_plans_two_diffs_at_once_and_asks_a_third_to_retry(diff_staging: tuple[Services, str]) -> None:
    services, _ = diff_staging
    started, release = threading.Semaphore(0), threading.Event()
    services.stages = lambda name: Held(name, started, release)  # type: ignore[assignment,return-value]
    with services.database.session() as session:
        token = issue_token(session, session.scalars(select(User).where(User.name == "vic")).one())[1]
    path, headers = "/api/v1/environments/infra/staging/diff", {"Authorization": f"Bearer {token}"}
    with TestClient(make_app(services)) as api, ThreadPoolExecutor(2) as pool:
        running = [pool.submit(api.get, path, headers=headers) for _ in range(DIFF_SLOTS)]
        for _ in range(DIFF_SLOTS):
            assert started.acquire(timeout=30), "both diffs are planning"
        refused = api.get(path, headers=headers)
        release.set()
        assert [future.result().status_code for future in running] == [200] * DIFF_SLOTS
    assert (refused.status_code, refused.headers["retry-after"]) == (503, DIFF_RETRY_AFTER)
    assert refused.json()["detail"] == "other diffs are being planned; try again"
