"""`tidegate diff ENV` as people and scripts read it: golden output (terminal and json) and argocd's exit
codes, over a real store and the example repo in a real git repository, planned through the preview
path (`previews.plan_environment`) by stand-in stage providers; nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from providers.stage import Action, Change, Stage, StageContext, StageFailed, StagePlan
from reconciler.runtime import Services
from store import (
    AuditEvent,
    Database,
    Environment,
    Plan,
    Repository,
    Revision,
    SecretBox,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
)
from tests.reconciler.conftest import EXAMPLE, make_repo_by
from tests.support.doubles import RecordingQueue
from tests.support.git_server import files_of
from tests.support.slow_sync import Targets
from tidegate import cli_diff
from tidegate.cli import app
from tidegate.client import LocalClient
from tidegate.redis_server import EmbeddedRedis, redis_client

CHANGES: dict[Stage, list[Change]] = {
    Stage.INFRASTRUCTURE: [Change(Stage.INFRASTRUCTURE, "aws_instance.node[1]", Action.create,
                                  '+ instance_type = "t3.small"')],
    Stage.CONFIGURATION: [],
    Stage.WORKLOADS: [Change(Stage.WORKLOADS, "apps/Deployment/web/web", Action.update,
                             "@@ spec.replicas @@\n-2\n+3"),
                      Change(Stage.WORKLOADS, "/ConfigMap/web/settings", Action.no_op)],
}
TERMINAL = """\
infra/staging at {sha}: a sync would make 2 changes
infrastructure: +1 ~0 -0
  create   aws_instance.node[1]
      + instance_type = "t3.small"
configuration: no changes
workloads: +0 ~1 -0
  update   apps/Deployment/web/web
      @@ spec.replicas @@
      -2
      +3
"""


class Planned:
    """A stage that plans `CHANGES` (or fails with `failure`); applying is never asked of it."""

    def __init__(self, name: Stage, changes: dict[Stage, list[Change]], failure: str | None = None) -> None:
        self.name, self.changes, self.failure = name, changes, failure

    def plan(self, context: StageContext[Any]) -> StagePlan:
        if self.failure:
            raise StageFailed(self.failure)
        return StagePlan(self.name, self.changes[self.name], digest=str(self.changes[self.name]))


@pytest.fixture
def staging(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[Services, str]]:
    """(services, head SHA): the example's staging at its desired revision, its infrastructure applied
    before (its outputs recorded, so every stage can be planned)."""
    services = Services(database=Database.embedded(tmp_path / "data"), secrets=SecretBox(SecretBox.generate_key()),
                        redis=redis_client(redis_server.client_url), targets=Targets(), data_dir=tmp_path / "data",
                        queue=RecordingQueue())
    services.database.upgrade()
    head = make_repo_by(tmp_path / "infra.git", files_of(EXAMPLE), "Alice Author <alice@example.com>")
    outputs = {"nodes": [{"name": "n1", "address": "198.51.100.1", "groups": ["nodes"]}],
               "kubeconfig": "apiVersion: v1\nkind: Config\n"}
    with services.database.session() as session:
        repository = Repository(name="infra", url=str(tmp_path / "infra.git"), branch="main")
        session.add(repository)
        session.flush()
        revision = Revision(repository_id=repository.id, ref="main", sha=head, author="Alice Author",
                            message="change", committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        session.add(revision)
        session.flush()
        env = Environment(repository_id=repository.id, name="staging", desired_revision_id=revision.id)
        session.add(env)
        session.flush()
        earlier = Sync(environment_id=env.id, revision_id=revision.id, trigger=SyncTrigger.POLL,
                       status=SyncLifecycle.SUCCEEDED)
        session.add(earlier)
        session.flush()
        session.add(SyncStageResult(sync_id=earlier.id, stage=Stage.INFRASTRUCTURE, status=StageStatus.SUCCEEDED,
                                    outputs=services.secrets.seal(json.dumps({"values": outputs}))))
    yield services, head
    services.database.dispose()


def run_diff(services: Services, *args: str, changes: dict[Stage, list[Change]] = CHANGES,
             failing: Stage | None = None) -> Result:
    services.stages = lambda name: Planned(name, changes, "no route to host" if name is failing else None)  # type: ignore[assignment,return-value]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_diff, "client", lambda: LocalClient(services, login="ops"))
        return CliRunner().invoke(app, ["diff", *args])


def rows(services: Services) -> tuple[int, int, int]:
    with services.database.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0  # type: ignore[return-value]
                     for model in (Sync, Plan, AuditEvent))


def test_diff_prints_each_stages_changes_with_their_diffs_and_exits_1(staging: tuple[Services, str]) -> None:
    services, head = staging
    before = rows(services)
    result = run_diff(services, "staging")
    assert (result.exit_code, result.stdout) == (1, TERMINAL.format(sha=head[:12]))
    assert rows(services) == before, "nothing stored: no sync, no plan, no audit entry"


def test_diff_output_json_is_one_document_of_the_stages(staging: tuple[Services, str]) -> None:
    services, head = staging
    result = run_diff(services, "infra/staging", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "environment": "infra/staging", "revision": head,
        "stages": [
            {"stage": "infrastructure", "summary": "+1 ~0 -0", "deferred": False, "error": None, "changes": [
                {"address": "aws_instance.node[1]", "action": "create", "diff": '+ instance_type = "t3.small"'}]},
            {"stage": "configuration", "summary": "+0 ~0 -0", "deferred": False, "error": None, "changes": []},
            {"stage": "workloads", "summary": "+0 ~1 -0", "deferred": False, "error": None, "changes": [
                {"address": "apps/Deployment/web/web", "action": "update", "diff": "@@ spec.replicas @@\n-2\n+3"}]},
        ],
    }


@pytest.mark.parametrize("changes,failing,code,head_line", [
    pytest.param({stage: [] for stage in Stage}, None, 0, "in sync, a sync would change nothing", id="in-sync"),
    pytest.param(CHANGES, Stage.CONFIGURATION, 2, "could not be planned in full", id="a-stage-fails"),
])
def test_diff_exit_code_says_whether_a_sync_would_change_anything(
        staging: tuple[Services, str], changes: dict[Stage, list[Change]], failing: Stage | None, code: int,
        head_line: str) -> None:
    services, head = staging
    result = run_diff(services, "staging", changes=changes, failing=failing)
    assert result.exit_code == code
    assert result.stdout.splitlines()[0] == f"infra/staging at {head[:12]}: {head_line}"
    if failing:
        assert "configuration: error: no route to host" in result.stdout.splitlines()
        assert "  create   aws_instance.node[1]" in result.stdout.splitlines(), "the other stages still shown"


def test_diff_of_an_unknown_environment_is_one_sentence_and_exit_2(staging: tuple[Services, str]) -> None:
    result = run_diff(staging[0], "nowhere")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", "error unknown environment 'nowhere'\n")
