"""A pull request's code tries to read the worker's secret key during its preview.

Previews plan every affected environment at the PR head, before anyone reviewed it. Once, a
`terraform_data` with `input = file(".../secret.key")` put the Fernet key, unmasked, into the plan
diff of the PR comment, and a playbook task with `check_mode: false` + `delegate_to: localhost` +
`shell` read it on the worker. Now Terraform and Ansible run sealed: the data directory does not
exist for them, so the read fails where it is written; and whatever they print is redacted by value.
The key must be found nowhere: not in the comment, the stored preview, the logs, the database file
or any file of the data directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from repo_schema.loader import load_repo
from sandbox.aws import AwsEndpoints, AwsSandbox
from store import SecretBox
from tests.reconciler.test_previews import PullRequests, _applied_before, pull_requests
from tests.security.conftest import WorkerData
from tidegate.redis_server import EmbeddedRedis
from tidegate.sandbox_session import SandboxSession

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
PLAYBOOK = "infrastructure/ansible/site.yml"


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsEndpoints]:
    with AwsSandbox() as endpoints:
        yield endpoints


def _aws_map(path: Path, aws: AwsEndpoints) -> Path:
    path.write_text(json.dumps({"aws": {"url": aws.url, "region": aws.region, "access_key": aws.access_key,
                                        "secret_key": aws.secret_key, "bucket": aws.bucket,
                                        "lock_table": aws.lock_table}}))
    return path


def assert_nowhere(key: str, prs: PullRequests, data: Path, log_text: str) -> None:
    """The key in none of the places Tidegate writes: comments, statuses, the stored preview, logs,
    the database file and every file under the data directory but the key file itself."""
    assert all(key not in body for body in prs.host.comment_bodies(7))
    assert key not in json.dumps(prs.host.statuses)
    row = prs.row()
    assert key not in row.body and key not in json.dumps(row.environments)
    assert key not in log_text
    needle = key.encode()
    leaked = [str(path) for path in data.rglob("*")
              if path.is_file() and path.name != "secret.key" and needle in path.read_bytes()]
    assert leaked == []


@pytest.mark.integration
def test_terraform_file_of_the_key_in_a_pull_request_finds_no_file_and_shows_no_key(
        tmp_path: Path, worker_data: WorkerData, aws: AwsEndpoints, redis_server: EmbeddedRedis,
        caplog: pytest.LogCaptureFixture) -> None:
    with pull_requests(tmp_path, _aws_map(tmp_path / "sandbox.json", aws), redis_server) as prs:
        SecretBox(worker_data.key)  # a worker's box holds this key: it is masked in whatever it writes
        head = prs.push({"infrastructure/terraform/cluster/exfil.tf":
                         f'resource "terraform_data" "exfil" {{\n  input = file("{worker_data.key_file}")\n}}\n'},
                        "Add a harmless resource")

        prs.preview(head)

        [body] = prs.host.comment_bodies(7)
        assert "no file exists at" in body.replace("\n", " "), body
        assert_nowhere(worker_data.key, prs, worker_data.path, caplog.text)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("ssh", "task"),
    [(True, {"shell": "cat {key}", "delegate_to": "localhost", "check_mode": False, "run_once": True}),
     (False, {"debug": {"msg": "{{{{ lookup('file', '{key}') }}}}"}, "run_once": True})],
    ids=["ssh-nodes-shell-delegated-to-the-worker", "local-connection-lookup-on-the-controller"],
)
def test_a_playbook_reading_the_key_on_the_worker_in_a_preview_finds_nothing(
        tmp_path: Path, worker_data: WorkerData, redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture,
        ssh: bool, task: dict[str, object]) -> None:
    attack = {name: (value.format(key=worker_data.key_file) if isinstance(value, str) else value)
              for name, value in task.items()}
    if "debug" in attack:
        attack["debug"] = {"msg": str(task["debug"]["msg"]).format(key=worker_data.key_file)}  # type: ignore[index]
    play = [{"name": "Read the worker's key", "hosts": "all", "gather_facts": False,
             "tasks": [{"name": "exfiltrate", **attack}]}]
    playbook = (EXAMPLE / PLAYBOOK).read_text() + "\n" + json.dumps(play)[1:-1].join(["- ", "\n"])
    with SandboxSession(load_repo(EXAMPLE), tmp_path / "sandbox", ssh=ssh) as sandbox, \
            pull_requests(tmp_path, sandbox.path, redis_server) as prs:
        SecretBox(worker_data.key)
        _applied_before(prs, "staging", nodes=[{"name": "staging-node-1", "address": "10.0.1.11", "groups": ["nodes"]}])
        head = prs.push({PLAYBOOK: playbook}, "Tidy the playbook")

        prs.preview(head)

        [body] = prs.host.comment_bodies(7)
        assert "**configuration** failed" in body and ("No such file" in body or "file not found" in body), body
        assert_nowhere(worker_data.key, prs, worker_data.path, caplog.text)
