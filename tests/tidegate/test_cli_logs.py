"""`tidegate logs SYNC_ID [-f]` as people and scripts read it: golden output over a real store
(in-process and over the real API), and — through the real pipeline with a real `terraform` — a
Terraform line printed by `logs -f` while the infrastructure stage is still applying."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from providers.stage import Stage
from reconciler import pipeline
from reconciler.runtime import Services
from store import Database, SecretBox
from tests.support.doubles import RecordingQueue
from tests.support.slow_sync import OwnModule, Stub, Targets, manual_sync_of_staging
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
    sync_id = manual_sync_of_staging(services, tmp_path)
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
