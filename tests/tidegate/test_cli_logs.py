"""`tidegate logs SYNC_ID [-f]` as people and scripts read it: golden output over a real store
(in-process and over the real API), and — through the real pipeline with a real `terraform` — a
Terraform line printed by `logs -f` while the infrastructure stage is still applying."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from providers.stage import Action, Change, Outcome, Stage, StageContext, StagePlan, StageResult
from providers.terraform import TerraformBackend, TerraformSpec, TerraformStage
from reconciler import pipeline, syncs
from reconciler.runtime import Services
from store import Database, Environment, Repository, Revision, SecretBox, SyncTrigger
from tests.reconciler.conftest import EXAMPLE, make_repo_by
from tests.support.diff_world import Targets
from tests.support.doubles import RecordingQueue
from tests.support.git_server import files_of
from tidegate import cli_logs
from tidegate.cli import app
from tidegate.client import Client, LocalClient
from tidegate.redis_server import EmbeddedRedis, redis_client

TERMINAL = """\
infrastructure | Initializing the backend...
infrastructure | aws_vpc.main: Creating...
infrastructure | aws_vpc.main: Creation complete after 2s [id=vpc-0a1b2c]
infrastructure | Apply complete! Resources: 1 added, 0 changed, 0 destroyed.
configuration  | PLAY [nodes] *****
configuration  | TASK [Write the config] *****
configuration  | changed: [node-1]
workloads      | apps/Deployment/web/web: configured
"""
DOCUMENT = {
    "sync": 1, "status": "succeeded",
    "stages": [
        {"stage": "infrastructure", "status": "succeeded", "lines": [
            "Initializing the backend...", "aws_vpc.main: Creating...",
            "aws_vpc.main: Creation complete after 2s [id=vpc-0a1b2c]",
            "Apply complete! Resources: 1 added, 0 changed, 0 destroyed."]},
        {"stage": "configuration", "status": "succeeded", "lines": [
            "PLAY [nodes] *****", "TASK [Write the config] *****", "changed: [node-1]"]},
        {"stage": "workloads", "status": "succeeded", "lines": ["apps/Deployment/web/web: configured"]},
    ],
}


def run_logs(connected: Client, *args: str) -> Result:
    """`tidegate logs ARGS` with `connected` as the client the command builds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_logs, "client", lambda: connected)
        return CliRunner().invoke(app, ["logs", *args])


ClientOf = Callable[[Any], Client]
CLIENTS = [pytest.param(lambda request: request.getfixturevalue("local_client"), id="in-process"),
           pytest.param(lambda request: request.getfixturevalue("http_client"), id="over-http")]


@pytest.mark.parametrize("client_of", CLIENTS)
@pytest.mark.parametrize("follow", [pytest.param([], id="now"), pytest.param(["-f"], id="followed")])
def test_a_finished_syncs_logs_print_line_by_line_prefixed_with_their_stage(
        request: pytest.FixtureRequest, logged_sync: tuple[Services, int], client_of: ClientOf,
        follow: list[str]) -> None:
    result = run_logs(client_of(request), "1", *follow)
    assert (result.exit_code, result.stdout, result.stderr) == (0, TERMINAL, "sync #1: succeeded\n")


@pytest.mark.parametrize("client_of", CLIENTS)
def test_logs_output_json_is_one_document_of_each_stage_with_its_status_and_lines(
        request: pytest.FixtureRequest, logged_sync: tuple[Services, int], client_of: ClientOf) -> None:
    result = run_logs(client_of(request), "1", "-o", "json")
    assert (result.exit_code, json.loads(result.stdout), result.stderr) == (0, DOCUMENT, "")


@pytest.mark.parametrize("client_of", CLIENTS)
def test_followed_json_is_one_object_a_line_with_the_status_last(
        request: pytest.FixtureRequest, logged_sync: tuple[Services, int], client_of: ClientOf) -> None:
    result = run_logs(client_of(request), "1", "-f", "-o", "json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [{"stage": stage["stage"], "line": line} for stage in DOCUMENT["stages"]  # type: ignore[attr-defined]
                    for line in stage["lines"]] + [{"sync": 1, "status": "succeeded"}]


@pytest.mark.parametrize("client_of", CLIENTS)
def test_logs_of_a_sync_that_does_not_exist_is_one_sentence(
        request: pytest.FixtureRequest, logged_sync: tuple[Services, int], client_of: ClientOf) -> None:
    result = run_logs(client_of(request), "99")
    assert result.exit_code == 1 and result.stdout == ""
    assert "no sync 99" in result.stderr and "Traceback" not in result.stderr


# --- following a running sync: the real pipeline, a real terraform ---------------------------------

SLOW_MODULE = """
resource "terraform_data" "first" {}

resource "terraform_data" "slow" {
  depends_on = [terraform_data.first]
  provisioner "local-exec" {
    command = "sleep 4"
  }
}

output "nodes" {
  value = [{ name = "n1", address = "198.51.100.1", groups = ["nodes"] }]
}

output "kubeconfig" {
  value = "apiVersion: v1\\nkind: Config\\n"
}
"""


class OwnModule:
    """The real Terraform stage, run by the real pipeline on a small `terraform_data` module (no cloud:
    the example's AWS module needs a moto sandbox and minutes) that takes four seconds to apply. The
    context the pipeline builds is kept — its artifacts and its line sink — only the module differs."""

    name = Stage.INFRASTRUCTURE

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "module").mkdir(parents=True)
        (root / "module" / "main.tf").write_text(SLOW_MODULE)
        self.real = TerraformStage(grace=5.0)
        self.ended: float | None = None

    def _own(self, context: StageContext[Any]) -> StageContext[TerraformSpec]:
        spec = TerraformSpec(path="module", backend=TerraformBackend(type="local", lock_timeout=0), timeout=120)
        return replace(context, workdir=self.root, spec=spec,
                       settings={"terraform_workspaces": str(self.root / "workspaces")})

    def plan(self, context: StageContext[Any]) -> StagePlan:
        return self.real.plan(self._own(context))

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult:
        result = self.real.apply(self._own(context), plan)
        self.ended = time.monotonic()
        return result


class Stub:
    """Configuration and workloads: one change each, applied at once (not what this test is about)."""

    def __init__(self, name: Stage) -> None:
        self.name = name
        self.address = "n1/write config" if name is Stage.CONFIGURATION else "apps/Deployment/web/web"

    def plan(self, context: StageContext[Any]) -> StagePlan:
        return StagePlan(self.name, [Change(self.name, self.address, Action.update, "~")], digest=self.address)

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult:
        return StageResult(self.name, {self.address: Outcome.configured}, log=f"{self.address}: configured")


class Stamped(io.StringIO):
    """A console's file that remembers when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines.extend((time.monotonic(), line) for line in text.splitlines())
        return len(text)


def test_logs_follow_prints_a_terraform_line_while_the_infrastructure_stage_still_applies(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    services = Services(database=Database.embedded(tmp_path / "data"), secrets=SecretBox(SecretBox.generate_key()),
                        redis=redis_client(redis_server.client_url), targets=Targets(), data_dir=tmp_path / "data",
                        queue=RecordingQueue())
    services.database.upgrade()
    infrastructure = OwnModule(tmp_path / "terraform")
    services.stages = lambda name: infrastructure if name is Stage.INFRASTRUCTURE else Stub(name)  # type: ignore[assignment,return-value]
    sync_id = _manual_sync_of_staging(services, tmp_path)
    pipeline.plan_sync(services, sync_id)
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == [("apply", sync_id)]

    printed = Stamped()
    applying = threading.Thread(target=pipeline.apply_sync, args=(services, sync_id))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_logs, "out", Console(file=printed, highlight=False, soft_wrap=True))
        applying.start()
        result = run_logs(LocalClient(services), str(sync_id), "-f")
    applying.join(timeout=120)

    assert (result.exit_code, result.stderr) == (0, f"sync #{sync_id}: succeeded\n")
    creating = [at for at, line in printed.lines if line == "infrastructure | terraform_data.slow: Creating..."]
    assert creating and infrastructure.ended is not None
    assert creating[0] < infrastructure.ended - 2, "the line was printed while the stage still applied"
    assert [line for _, line in printed.lines][-2:] == ["configuration  | n1/write config: configured",
                                                        "workloads      | apps/Deployment/web/web: configured"]
    services.database.dispose()


def _manual_sync_of_staging(services: Services, tmp_path: Path) -> int:
    """The example repo's staging registered from a real git repository, and a manual sync of its head."""
    head = make_repo_by(tmp_path / "infra.git", files_of(EXAMPLE), "Alice Author <alice@example.com>")
    with services.database.session() as session:
        repository = Repository(name="infra", url=str(tmp_path / "infra.git"), branch="main")
        session.add(repository)
        session.flush()
        revision = Revision(repository_id=repository.id, ref="main", sha=head, author="Alice Author",
                            message="change", committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        env = Environment(repository_id=repository.id, name="staging")
        session.add_all([revision, env])
        session.flush()
        sync, _ = syncs.request(session, env, revision, SyncTrigger.MANUAL)
        session.flush()
        return sync.id

