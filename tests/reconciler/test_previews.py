"""Pull request previews on real parts: a bare copy of the example repo, real git, real Terraform planning
against moto with the S3 backend and DynamoDB lock, the store on SQLite, Redis; the Git host is the
recording fake (the one mock allowed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from providers.stage import Action, Change, Stage, StagePlan
from reconciler import pipeline, preview_tasks, runtime, syncs
from reconciler.hosts import COMMENT_MARKER
from reconciler.hosts.approvals import RecountRequest
from reconciler.plans import EnvironmentPlan, decode
from reconciler.previews import (
    EnvironmentPreview,
    GoAheadRequest,
    PreviewOutcome,
    PreviewRequest,
    Report,
    markdown,
    run,
)
from reconciler.runtime import Services
from repo_schema.loader import load_repo
from sandbox.aws import AwsEndpoints, AwsSandbox
from store import (
    Database,
    Environment,
    GitHost,
    Preview,
    PreviewStatus,
    Repository,
    Revision,
    SecretBox,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
)
from tests.support.doubles import RecordingQueue
from tests.support.git_host import GitHostServer, git_host_server
from tests.support.git_server import WorkClone, files_of, make_bare_repo
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.sandbox_session import SandboxSession
from tidegate.settings import Settings
from tidegate.targets import SandboxTargets
from webhooks.app import create_router

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
PUBLIC_URL = "https://tidegate.example.test"
WEBHOOK_SECRET = "pr-webhook-secret"
STAGING_PATCH = "apps/web/overlays/staging/configmap-patch.yaml"


def plugin_dirs() -> str:
    """The provider mirror (`source scripts/terraform-env.sh` sets it; found on the filesystem otherwise)."""
    configured = os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", "")
    if configured:
        return configured
    found = subprocess.run(["bash", "-c", "source scripts/terraform-env.sh && echo $TIDEGATE_TERRAFORM_PLUGIN_DIRS"],
                           cwd=EXAMPLE.parents[1], capture_output=True, text=True, check=False).stdout.strip()
    if not found:
        pytest.fail("no Terraform provider mirror found (TIDEGATE_TERRAFORM_PLUGIN_DIRS)", pytrace=False)
    return found


@dataclass
class PreviewJobs:
    """The preview queue the webhook receiver hands PR heads to (the worker's task is `run`)."""

    requests: list[PreviewRequest] = field(default_factory=list)

    def preview(self, request: PreviewRequest) -> None:
        self.requests.append(request)

    def recount(self, request: RecountRequest) -> None:
        raise AssertionError("no review in these tests")

    def go_ahead(self, request: GoAheadRequest) -> None:
        raise AssertionError("no go-ahead in these tests (tests/security has them)")


@dataclass
class PullRequests:
    """A registered copy of the example repo, its fake GitHub, its webhook receiver, and a person
    working on a PR branch."""

    services: Services
    host: GitHostServer
    hooks: TestClient
    jobs: PreviewJobs
    bare: Path
    repository_id: int
    base: str
    work: WorkClone

    def push(self, files: dict[str, str | bytes | None], message: str) -> str:
        sha = self.work.commit(message, files)
        self.work.push(force=True)
        return sha

    def preview(self, head: str, action: str = "opened", number: int = 7) -> PreviewOutcome:
        """GitHub tells Tidegate about the PR (a signed webhook); the worker then runs the preview."""
        return run(self.services, self.deliver(head, action, number))

    def deliver(self, head: str, action: str = "opened", number: int = 7) -> PreviewRequest:
        """The signed webhook only: the preview request the receiver queued."""
        if number not in self.host.pulls:
            self.host.add_pull(number, author="alice", head_sha=head)
        self.host.pulls[number].head_sha = head
        body = json.dumps({"action": action, "number": number, "repository": {
            "full_name": "acme/infra", "clone_url": str(self.bare)}, "pull_request": {
            "number": number, "title": "Change staging", "user": self.host.user_json("alice"), "merged": False,
            "head": {"sha": head, "ref": "feature", "repo": {"full_name": "acme/infra"}},
            "base": {"sha": self.base, "ref": "main", "repo": {"full_name": "acme/infra"}}}}).encode()
        signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = self.hooks.post("/webhooks/github", content=body, headers={
            "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature, "Content-Type": "application/json"})
        assert answer.status_code == 202, answer.text
        request = self.jobs.requests.pop()
        assert (request.head_sha, request.base_sha, request.public_url) == (head, self.base, PUBLIC_URL)
        return request

    def row(self, number: int = 7) -> Preview:
        with self.services.database.session() as session:
            row = session.query(Preview).filter_by(repository_id=self.repository_id, number=number).one()
            session.expunge(row)
            return row


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsEndpoints]:
    with AwsSandbox() as endpoints:
        yield endpoints


@pytest.fixture
def prs(tmp_path: Path, aws: AwsEndpoints, redis_server: EmbeddedRedis) -> Iterator[PullRequests]:
    sandbox_map = tmp_path / "sandbox.json"
    sandbox_map.write_text(json.dumps({"aws": {"url": aws.url, "region": aws.region, "access_key": aws.access_key,
                                               "secret_key": aws.secret_key, "bucket": aws.bucket,
                                               "lock_table": aws.lock_table}}))
    with pull_requests(tmp_path, sandbox_map, redis_server) as prs:
        yield prs


@contextmanager
def pull_requests(tmp_path: Path, sandbox_map: Path, redis_server: EmbeddedRedis) -> Iterator[PullRequests]:
    """The example repo registered with a fake GitHub, its stages pointed at the sandbox in `sandbox_map`."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, terraform_plugin_dirs=plugin_dirs(), sandbox_map=sandbox_map)
    database = Database.embedded(data)
    database.upgrade()
    box = SecretBox(SecretBox.generate_key())
    services = Services(database=database, secrets=box, redis=redis_client(redis_server.client_url),
                        targets=SandboxTargets(settings, sandbox_map), data_dir=data, queue=None)  # type: ignore[arg-type]
    bare = tmp_path / "git" / "infra.git"
    base = make_bare_repo(bare, files_of(EXAMPLE), message="Add the example environments")
    with git_host_server(GitHost.GITHUB, "acme/infra", token="gh-token") as host:
        host.add_collaborator("alice", "write")  # a member: her pull requests are planned without a go-ahead
        with database.session() as session:
            repository = Repository(name="infra", url=str(bare), branch="main", host=GitHost.GITHUB,
                                    host_api_url=host.api_url, host_repository="acme/infra",
                                    host_token=box.seal("gh-token"), head_sha=base)
            session.add(repository)
            session.flush()
            repository_id = repository.id
        with tempfile.TemporaryDirectory(prefix="pr-work-") as scratch:
            work = WorkClone(bare, Path(scratch) / "work", branch="feature")
            jobs = PreviewJobs()
            app = FastAPI()
            app.include_router(create_router(services, Settings(webhook_secret=SecretStr(WEBHOOK_SECRET),
                                                                public_url=PUBLIC_URL), previews=jobs))
            with TestClient(app) as hooks:
                yield PullRequests(services, host, hooks, jobs, bare, repository_id, base, work)
        assert host.problems == [], host.problems
    database.dispose()


def _staging_patch(replicas_note: str) -> dict[str, str | bytes | None]:
    text = (EXAMPLE / STAGING_PATCH).read_text()
    return {STAGING_PATCH: text + f"\n# {replicas_note}\n"}


@pytest.mark.integration
def test_a_pull_request_gets_one_comment_and_a_status_that_goes_pending_then_success(prs: PullRequests) -> None:
    head = prs.push(_staging_patch("first push"), "Tune staging settings")

    outcome = prs.preview(head)

    assert outcome.status is PreviewStatus.SUCCESS and outcome.environments == ["staging"]
    assert prs.host.status_states(head) == ["pending", "success"]
    assert {s["target_url"] for s in prs.host.statuses[head]} == {f"{PUBLIC_URL}/previews/{outcome.preview_id}"}
    [body] = prs.host.comment_bodies(7)
    assert body.startswith(COMMENT_MARKER)
    assert "#### `staging`" in body and "`production`" not in body
    for stage in ("infrastructure", "configuration", "workloads"):
        assert f"**{stage}**" in body
    assert "Terraform changes by address" in body and "`aws_eks_cluster.this`: **create**" in body
    assert "planned after infrastructure applies" in body  # no cluster or nodes exist before the first apply
    assert prs.row().status is PreviewStatus.SUCCESS and prs.row().body == body.removeprefix(COMMENT_MARKER + "\n")

    second = prs.push(_staging_patch("second push"), "Tune staging settings again")
    again = prs.preview(second, action="synchronize")

    assert again.comment_id == outcome.comment_id and again.preview_id == outcome.preview_id
    [edited] = prs.host.comment_bodies(7)
    assert second[:12] in edited and head[:12] not in edited
    assert prs.host.status_states(second) == ["pending", "success"]
    assert len(prs.host.calls_to("POST", r"/issues/7/comments$")) == 1
    assert len(prs.host.calls_to("PATCH", r"/issues/comments/")) == 1


@pytest.mark.integration
def test_an_invalid_manifest_fails_the_preview_with_its_file_and_line_in_the_comment(prs: PullRequests) -> None:
    deployment = "apps/web/base/deployment.yaml"
    broken = (EXAMPLE / deployment).read_text().replace("containerPort: 80", "containerPort: eighty", 1)
    assert broken != (EXAMPLE / deployment).read_text()
    head = prs.push({deployment: broken}, "Break the web deployment")

    outcome = prs.preview(head)

    assert outcome.status is PreviewStatus.FAILURE
    assert prs.host.status_states(head) == ["pending", "failure"]
    assert prs.host.statuses[head][-1]["description"].startswith("Validation failed")
    [body] = prs.host.comment_bodies(7)
    assert "Validation failed" in body
    assert f"{deployment}:" in body, body
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "containerPort: eighty" in text)
    assert f"{deployment}:{line}" in body, body


@pytest.mark.integration
def test_a_change_no_environment_reads_plans_nothing_and_succeeds(prs: PullRequests) -> None:
    head = prs.push({"docs/notes.md": "# notes\n"}, "Add notes")

    outcome = prs.preview(head)

    assert (outcome.status, outcome.environments) == (PreviewStatus.SUCCESS, [])
    assert prs.host.status_states(head) == ["pending", "success"]
    assert "No environment reads the paths" in prs.host.comment_bodies(7)[0]


# -- the comment itself, from real stage plans of all three kinds -------------------------------------------

def _plan(stage: Stage, *changes: tuple[str, Action, str]) -> StagePlan:
    return StagePlan(stage, [Change(stage, address, action, diff) for address, action, diff in changes], "d")


def _report() -> Report:
    plan = EnvironmentPlan("f" * 40)
    plan.stages[Stage.INFRASTRUCTURE] = _plan(
        Stage.INFRASTRUCTURE, ("aws_instance.node[0]", Action.replace, "~ instance_type = t3.small -> t3.medium"),
        ("aws_vpc.this", Action.no_op, ""))
    plan.stages[Stage.CONFIGURATION] = _plan(
        Stage.CONFIGURATION, ("staging-node-1/common : write sysctl", Action.update,
                                  "--- before: /etc/sysctl.conf\n+++ after\n-a=1\n+a=2"))
    plan.stages[Stage.WORKLOADS] = _plan(
        Stage.WORKLOADS, ("apps/Deployment/web/web", Action.update, "-  replicas: 2\n+  replicas: 3 ```"),
        ("/ConfigMap/web/settings", Action.create, "+data: {}"))
    return Report(head_sha="f" * 40, environments={"staging": EnvironmentPreview(stages=plan.summary())})


def test_the_comment_has_a_summary_line_per_environment_then_a_section_per_stage() -> None:
    body = markdown(_report(), PreviewRequest(repository_id=1, number=7, head_sha="f" * 40), "https://t/previews/1")

    assert "**infrastructure** `+1 ~0 -1` · **configuration** `+0 ~1 -0` · **workloads** `+1 ~1 -0`" in body
    for title in ("Terraform changes by address (1)", "Ansible changes per host/task (1)",
                  "Kubernetes diff per object (2)"):
        assert f"<details><summary>{title}</summary>" in body
    assert "`staging-node-1/common : write sysctl`: **update**" in body
    assert "- 1 unchanged" in body
    assert "````diff\n-  replicas: 2\n+  replicas: 3 ```\n````" in body  # a fence the diff cannot close
    assert "[Open this preview in Tidegate](https://t/previews/1)" in body


def test_a_stage_that_cannot_plan_fails_the_preview_and_says_why() -> None:
    report = Report(head_sha="f" * 40, environments={"staging": EnvironmentPreview(
        stages={"infrastructure": {"summary": "+0 ~0 -0", "changes": []}},
        errors={"configuration": "AnsibleStageError: staging-node-1 unreachable"})})

    body = markdown(report, PreviewRequest(repository_id=1, number=7, head_sha="f" * 40), "https://t/previews/1")

    assert report.status is PreviewStatus.FAILURE
    assert "**configuration** failed" in body and "staging-node-1 unreachable" in body


def test_a_huge_plan_is_cut_to_fit_one_comment() -> None:
    plan = EnvironmentPlan("f" * 40)
    plan.stages[Stage.WORKLOADS] = _plan(Stage.WORKLOADS, *[
        (f"/ConfigMap/web/c{index}", Action.create, "+x\n" * 3000) for index in range(60)])
    report = Report(head_sha="f" * 40, environments={"staging": EnvironmentPreview(stages=plan.summary())})

    body = markdown(report, PreviewRequest(repository_id=1, number=7, head_sha="f" * 40), "https://t/previews/1")

    assert len(body) <= 60_000 and "`/ConfigMap/web/c59`: **create**" in body


@pytest.mark.integration
@pytest.mark.parametrize("trouble", [pytest.param("no-host-api", id="a-generic-git-server"),
                                     pytest.param("token-refused", id="the-host-refuses-the-token")])
def test_a_preview_whose_author_the_host_cannot_vouch_for_waits_and_is_kept_for_the_dashboard(
        prs: PullRequests, trouble: str) -> None:
    """Without a host that says the author may push, nothing of the pull request runs (fail closed)."""
    with prs.services.database.session() as session:
        repository = session.get_one(Repository, prs.repository_id)
        if trouble == "no-host-api":
            repository.host = GitHost.GENERIC
        else:
            repository.host_token = prs.services.secrets.seal("revoked-token")
    head = prs.push({"docs/notes.md": "# notes\n"}, "Add notes")

    outcome = prs.preview(head)

    assert (outcome.status, outcome.posted, outcome.comment_id) == (PreviewStatus.PENDING, False, None)
    assert outcome.held and ("no Git host API" in outcome.held or "could not say" in outcome.held)
    assert prs.row().held == outcome.held and "/tidegate preview" in prs.row().body
    assert prs.host.comments == {} and prs.host.statuses == {}
    if trouble == "token-refused":
        assert prs.host.problems and all(problem.startswith("401") for problem in prs.host.problems)
        prs.host.problems.clear()
    else:
        assert prs.host.calls == []


@pytest.mark.integration
def test_the_preview_task_runs_a_request_as_the_receiver_serialised_it(prs: PullRequests,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    head = prs.push({"docs/notes.md": "# notes\n"}, "Add notes")
    prs.host.add_pull(9, author="alice", head_sha=head)
    request = PreviewRequest(repository_id=prs.repository_id, number=9, head_sha=head, base_sha=prs.base,
                             base_ref="main", author="alice", author_id=str(prs.host.id_of("alice")),
                             public_url=PUBLIC_URL)
    monkeypatch.setattr(runtime, "_configured", None)  # restored afterwards: other tests configure their own
    runtime.configure(prs.services)

    result = preview_tasks.preview.apply(args=[json.loads(json.dumps(request.model_dump(mode="json")))]).get()

    assert result["status"] == "success" and result["posted"] is True
    assert preview_tasks.preview.name == "tidegate.preview"
    assert prs.host.status_states(head) == ["pending", "success"]


@pytest.mark.integration
def test_an_environment_applied_before_gets_its_ansible_and_kubernetes_changes_previewed_too(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    """Staging's last apply reported its nodes and cluster: the preview plans all three stages for real
    (Terraform against moto, Ansible in check mode on the nodes, a Kubernetes diff against its API)."""
    loaded = load_repo(EXAMPLE)
    with SandboxSession(loaded, tmp_path / "sandbox", ssh=False) as sandbox, \
            pull_requests(tmp_path, sandbox.path, redis_server) as prs:
        _applied_before(prs, "staging", nodes=[{"name": f"staging-node-{i}", "address": f"10.0.1.{10 + i}",
                                                "groups": ["nodes", "ingress"] if i == 1 else ["nodes"]}
                                               for i in (1, 2)])
        head = prs.push(_staging_patch("previewed against the live environment"), "Tune staging settings")

        outcome = prs.preview(head)

        [body] = prs.host.comment_bodies(7)
        assert outcome.status is PreviewStatus.SUCCESS, body
        assert "planned after infrastructure applies" not in body
        for title in ("Terraform changes by address", "Ansible changes per host/task", "Kubernetes diff per object"):
            assert title in body, body
        assert "`staging-node-1/" in body and "/Deployment/web/web`: **create**" in body
        assert prs.host.status_states(head) == ["pending", "success"]
        # A sync of the same revision plans to the same fingerprint: one computation, two doors.
        assert prs.row().environments["staging"]["fingerprint"] == _sync_plan_fingerprint(prs, head)


def _sync_plan_fingerprint(prs: PullRequests, sha: str) -> str:
    """Plan a manual sync of `sha` on staging as a worker would; its plan's content fingerprint."""
    prs.services.queue = RecordingQueue()
    with prs.services.database.session() as session:
        revision = Revision(repository_id=prs.repository_id, ref="main", sha=sha, author="A <a@example.test>",
                            message="the PR head", committed_at=datetime(2026, 11, 2, tzinfo=UTC))
        session.add(revision)
        env = session.query(Environment).filter_by(repository_id=prs.repository_id, name="staging").one()
        sync, _ = syncs.request(session, env, revision, SyncTrigger.MANUAL)
        session.flush()
        sync_id = sync.id
    pipeline.plan_sync(prs.services, sync_id)
    with prs.services.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None and plan.payload is not None, session.get_one(Sync, sync_id).error
        return decode(prs.services.secrets.unseal(plan.payload)).content_fingerprint


def _applied_before(prs: PullRequests, environment: str, nodes: list[dict[str, Any]]) -> None:
    """Record a succeeded sync whose infrastructure stage reported `nodes` and a kubeconfig."""
    outputs = {"values": {"nodes": nodes, "kubeconfig": "apiVersion: v1\nkind: Config\n"}, "sensitive": ["kubeconfig"]}
    with prs.services.database.session() as session:
        revision = Revision(repository_id=prs.repository_id, ref="main", sha=prs.base, author="A <a@example.test>",
                            message="bootstrap", committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        env = Environment(repository_id=prs.repository_id, name=environment)
        session.add_all([revision, env])
        session.flush()
        sync = Sync(environment_id=env.id, revision_id=revision.id, trigger=SyncTrigger.POLL,
                    status=SyncLifecycle.SUCCEEDED)
        session.add(sync)
        session.flush()
        session.add(SyncStageResult(sync_id=sync.id, stage=Stage.INFRASTRUCTURE, status=StageStatus.SUCCEEDED,
                                    outputs=prs.services.secrets.seal(json.dumps(outputs))))


@pytest.mark.integration
def test_two_deliveries_of_one_push_at_once_leave_one_comment(prs: PullRequests) -> None:
    """GitHub sends `opened` and a retry, or `reopened` and `synchronize`, seconds apart: the second
    preview waits for the first and edits its comment instead of posting another."""
    head = prs.push(_staging_patch("racing push"), "Tune staging settings")
    requests = [prs.deliver(head, action) for action in ("opened", "reopened")]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda request: run(prs.services, request), requests))
    assert {outcome.status for outcome in outcomes} == {PreviewStatus.SUCCESS}
    assert len(prs.host.comment_bodies(7)) == 1
    assert len(prs.host.calls_to("POST", r"/issues/7/comments$")) == 1
    assert outcomes[0].comment_id == outcomes[1].comment_id
