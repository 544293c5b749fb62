"""The demo's pull request preview, from its pieces: `tidegate up`'s sandbox Git host over a local
config repo, the repository registered with it the way `up` does, `tidegate sandbox pr BRANCH`
opening the pull request, and the worker's preview task planning it against the sandbox (moto) —
then one comment on the host, the same text in the store, and one preview on the Previews page.

The worker is a thread running the preview task's body (`reconciler.previews.run`) on what the
host enqueued; everything else is what the demo runs."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dashboard.identity import Grant, bind, create_user, issue_token
from reconciler.hosts import COMMENT_MARKER
from reconciler.hosts.approvals import RecountRequest
from reconciler.previews import GoAheadRequest, PreviewOutcome, PreviewRequest, run
from reconciler.runtime import Services
from repo_schema.loader import load_repo
from sandbox.aws import AwsSandbox
from sandbox.git_host import SandboxGitHost
from store import Database, GitHost, Preview, PreviewStatus, Repository, Role, SecretBox
from tests.dashboard.conftest import make_app
from tests.reconciler.conftest import EXAMPLE
from tidegate.cli import app
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.sandbox_host import enqueue_previews, host_settings, start_host
from tidegate.settings import Settings
from tidegate.targets import SandboxTargets
from tidegate.up import git_repository, register_repository
from tidegate.wiring import terraform_plugin_dirs

STAGING_PATCH = "apps/web/overlays/staging/configmap-patch.yaml"
GIT = ["-c", "user.name=Demo", "-c", "user.email=demo@tidegate.invalid"]


@dataclass
class ThreadWorker:
    """The `preview` queue and a worker on it: each request runs the preview task's body in a thread."""

    services: Services
    outcomes: list[PreviewOutcome] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def preview(self, request: PreviewRequest) -> None:
        thread = threading.Thread(target=lambda: self.outcomes.append(run(self.services, request)))
        thread.start()
        self.threads.append(thread)

    def recount(self, request: RecountRequest) -> None:
        raise AssertionError("the demo's pull request has no reviews")

    def go_ahead(self, request: GoAheadRequest) -> None:
        raise AssertionError("the demo's pull request is its owner's: no go-ahead needed")


@dataclass
class DemoRepo:
    services: Services
    host: SandboxGitHost
    worker: ThreadWorker
    repo: Path
    data: Path
    repository_id: int


@pytest.fixture
def demo(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[DemoRepo]:
    """What `tidegate up --repo` sets up for the demo's seeded repo, minus clusters and nodes."""
    repo, data = tmp_path / "infra-repo", tmp_path / "data"
    subprocess.run(["cp", "-r", str(EXAMPLE), str(repo)], check=True)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*GIT, "commit", "-q", "-m", "Seed"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    with AwsSandbox() as aws:
        sandbox_map = tmp_path / "endpoints.json"
        sandbox_map.write_text(json.dumps({"aws": {
            "url": aws.url, "region": aws.region, "access_key": aws.access_key, "secret_key": aws.secret_key,
            "bucket": aws.bucket, "lock_table": aws.lock_table}}))
        mirrors = terraform_plugin_dirs(Settings(data_dir=data))  # found as `up` and the worker find them
        settings = Settings(data_dir=data, sandbox_map=sandbox_map, terraform_plugin_dirs=mirrors)
        database = Database.embedded(data)
        database.upgrade()
        services = Services(database=database, secrets=SecretBox(SecretBox.generate_key()),
                            redis=redis_client(redis_server.client_url), targets=SandboxTargets(settings, sandbox_map),
                            data_dir=data, queue=None)  # type: ignore[arg-type]
        url, branch = git_repository(repo, data)
        with start_host(Path(url), "infra-repo", data) as host:
            repository_id = register_repository(services, load_repo(repo), url, branch, "infra-repo",
                                                host_settings(host))
            worker = ThreadWorker(services)
            enqueue_previews(host, repository_id, settings, worker)
            yield DemoRepo(services, host, worker, repo, data, repository_id)
            for thread in worker.threads:
                thread.join(timeout=600)
        database.dispose()


def push_branch(repo: Path, scratch: Path, branch: str) -> str:
    """A person's change on a branch, pushed to the config repo (as the demo does)."""
    work = scratch / "work"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "switch", "-q", "-c", branch], check=True)
    patch = work / STAGING_PATCH
    patch.write_text(patch.read_text().replace("LOG_LEVEL: debug", "LOG_LEVEL: info"))
    subprocess.run(["git", "-C", str(work), *GIT, "commit", "-q", "-am", "Quieter staging logs"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", branch], check=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.integration
def test_a_branch_opened_as_a_pull_request_on_the_sandbox_host_gets_one_preview_with_its_comment(
        demo: DemoRepo, tmp_path: Path) -> None:
    assert "LOG_LEVEL: debug" in (EXAMPLE / STAGING_PATCH).read_text()
    head = push_branch(demo.repo, tmp_path, "quieter-logs")

    result = CliRunner().invoke(app, ["sandbox", "pr", "quieter-logs", "--title", "Quieter staging logs",
                                      "--wait", "600"], env={"TIDEGATE_DATA_DIR": str(demo.data)})

    assert result.exit_code == 0, result.output
    assert f"opened pull request #1: quieter-logs ({head[:12]}) into main" in result.output
    assert "preview success; the comment on #1:" in result.output
    [outcome] = demo.worker.outcomes
    assert outcome.status is PreviewStatus.SUCCESS and outcome.environments == ["staging"] and outcome.posted
    [comment] = demo.host.comments[1].values()
    assert comment.startswith(COMMENT_MARKER) and "#### `staging`" in comment and "`production`" not in comment
    assert "Kubernetes" in comment or "planned after infrastructure applies" in comment
    assert comment.removeprefix(COMMENT_MARKER).strip() in result.output
    assert [s["status"] for s in demo.host.statuses[head]] == ["pending", "success"]
    with demo.services.database.session() as session:
        [row] = session.query(Preview).all()
        assert (row.number, row.head_sha, row.status, row.title) == (1, head, PreviewStatus.SUCCESS,
                                                                     "Quieter staging logs")
        assert row.body == comment.removeprefix(COMMENT_MARKER + "\n")
        assert session.get_one(Repository, demo.repository_id).host is GitHost.GITEA
        user = create_user(session, "lead")
        bind(session, "user:lead", Grant(Role.ADMIN, "*"))
        token = issue_token(session, user, "tests")[1]
    with TestClient(make_app(demo.services)) as client:
        page = client.get("/previews", headers={"Authorization": f"Bearer {token}"})
        detail = client.get(f"/previews/{outcome.preview_id}", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and page.text.count('href="/previews/') == 1
    assert "infra-repo #1" in page.text and "Quieter staging logs" in page.text
    assert detail.status_code == 200 and "staging" in detail.text


def test_the_sandbox_host_refuses_a_pull_request_of_a_branch_that_does_not_exist(demo: DemoRepo) -> None:
    result = CliRunner().invoke(app, ["sandbox", "pr", "no-such-branch", "--wait", "0"],
                                env={"TIDEGATE_DATA_DIR": str(demo.data)})

    assert result.exit_code == 1
    assert "branch 'no-such-branch' does not exist in sandbox/infra-repo" in result.output
    assert demo.host.pulls == {} and demo.worker.outcomes == []
