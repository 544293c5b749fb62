"""A Tidegate on real parts for the change-control stories: the example repo in a real bare git
repository, the real store (SQLite), a real Redis, the real API and webhook receivers over ASGI,
the real pipeline, previews and approval code, and the recording fake of a Git host.

Only the three providers are in-process stand-ins (`FakeStage`): what Terraform, Ansible and
Kubernetes would plan is not what these stories are about, and the stand-ins make each story run
in seconds. Everyone else is a person with a Tidegate account and, where it matters, a Git host
account: commits carry the git identity the test gives them, and pushes, pull requests, reviews
and comments arrive as signed webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dashboard.app import create_router as dashboard_router
from dashboard.identity import Grant, add_member, bind, create_user, ensure_group, issue_token
from providers.stage import Action, Change, DriftItem, Outcome, Stage, StageContext, StagePlan, StageResult
from reconciler import pipeline, repositories, syncs
from reconciler.runtime import Services
from reconciler.targets import Connection
from repo_schema.models import ConfigurationSpec
from store import Database, Environment, GitHost, Repository, Role, SecretBox, Sync, SyncTrigger
from tests.support.doubles import RecordingQueue
from tests.support.git_host import GitHostServer
from tests.support.git_server import git, git_env
from tidegate.redis_server import EmbeddedRedis, redis_client
from webhooks.app import create_router as webhooks_router

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
PRODUCTION = "environments/production.yaml"
WEBHOOK_SECRET = "security-story-webhook-secret"
PUBLIC_URL = "https://tidegate.example.test"
HOST_TOKEN = "host-token"
BOOTSTRAP_AUTHOR = "Ivy Initial <ivy@example.com>"

PEOPLE: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (email, groups, roles)  -- production's approvers are group:platform-leads
    "root": ("root@example.com", [], ["admin"]),
    "alice": ("alice@example.com", ["platform-leads"], ["approver"]),
    "bob": ("bob@example.com", ["platform-leads"], ["approver"]),
    "carol": ("carol@example.com", ["platform-leads"], ["approver"]),
    "andy": ("andy@example.com", [], ["approver"]),
    "stella": ("stella@example.com", ["platform-leads"], ["approver:infra/staging"]),
}
"""andy may approve in general but no policy names him; stella is a platform lead bound to staging only."""


# --- the three providers, in process ---------------------------------------------------------------------

@dataclass
class Live:
    """What the stand-in providers have applied, and what they were asked to plan."""

    infra_applied: bool = False
    config_changes: list[str] = field(default_factory=lambda: ["n1/write config"])
    planned: list[tuple[str, Stage]] = field(default_factory=list)
    """(revision, stage) of every plan made: a preview that runs nothing plans nothing."""
    untrusted: list[bool] = field(default_factory=list)
    """Each plan's `untrusted_head` setting: a go-ahead preview of an outsider's head refuses what
    would run unsealed (a `local` Ansible connection)."""


class FakeStage:
    """A provider that plans and applies in memory; its digests depend only on the changes."""

    def __init__(self, name: Stage, live: Live) -> None:
        self.name, self.live = name, live

    def _changes(self) -> list[Change]:
        if self.name is Stage.INFRASTRUCTURE:
            return [] if self.live.infra_applied else [Change(self.name, "aws_vpc.this", Action.create, "+")]
        if self.name is Stage.CONFIGURATION:
            return [Change(self.name, address, Action.update, "~") for address in self.live.config_changes]
        return [Change(self.name, "apps/Deployment/web/web", Action.update, "~")]

    def plan(self, context: StageContext[Any]) -> StagePlan:
        self.live.planned.append((context.revision, self.name))
        self.live.untrusted.append(bool(context.settings.get("untrusted_head")))
        return StagePlan(self.name, self._changes(), digest=str(self._changes()), live_state="serial-1")

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult:
        outputs: dict[str, Any] = {}
        if self.name is Stage.INFRASTRUCTURE:
            self.live.infra_applied = True
            outputs = {"nodes": [{"name": "n1", "address": "10.0.0.1", "groups": ["nodes"]}],
                       "kubeconfig": "apiVersion: v1\nkind: Config\n"}
        if self.name is Stage.WORKLOADS:
            outputs = {"health": {"environment": "Healthy"}, "inventory": {}}
        return StageResult(self.name, {c.address: Outcome.created for c in plan.changes}, outputs=outputs)

    def observe(self, context: StageContext[Any]) -> list[DriftItem]:
        return []


class Targets:
    def infrastructure(self, repository: str, environment: str) -> Connection:
        return Connection({}, {})

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        return Connection({}, {})

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        return Connection({}, {"kubeconfig": kubeconfig or ""})


@dataclass
class Queue(RecordingQueue):
    """The recording queue, standing for the webhooks' preview queue too (tests run the jobs themselves)."""

    def preview(self, request: Any) -> None:
        self.sent.append(("preview", request))

    def recount(self, request: Any) -> None:
        self.sent.append(("recount", request))

    def go_ahead(self, request: Any) -> None:
        self.sent.append(("go_ahead", request))

    def take(self, kind: str) -> list[Any]:
        """The jobs of one kind sent since the last look (and forget them)."""
        found = [job for name, job in self.sent if name == kind]
        self.sent = [(name, job) for name, job in self.sent if name != kind]
        return found


# --- the world -------------------------------------------------------------------------------------------

@dataclass
class Settings:
    data_dir: Path
    secret_key: SecretStr | None = None
    public_url: str = PUBLIC_URL
    webhook_secret: SecretStr | None = field(default_factory=lambda: SecretStr(WEBHOOK_SECRET))


@dataclass
class Stack:
    """One Tidegate, one registered config repo (`infra`), people with tokens, and a place to work."""

    services: Services
    http: TestClient
    queue: Queue
    live: Live
    bare: Path
    work: Path
    repository_id: int
    tokens: dict[str, str]
    host: GitHostServer | None = None

    # -- git ------------------------------------------------------------------------------------------

    def commit(self, message: str, files: Mapping[str, str | None] | None = None, *, author: str,
               committer: str | None = None, branch: str = "main") -> str:
        """Commit on `branch` of the work clone as `author` (and `committer`), and push it."""
        if branch != self._branch():
            git("checkout", "--quiet", *([branch] if self._has(branch) else ["-b", branch, "main"]), cwd=self.work)
        for name, content in (files or {}).items():
            target = self.work / name
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, cwd=self.work,
            env=_identity(author, committer or author))
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def merge(self, branch: str, message: str, *, committer: str) -> str:
        """Merge `branch` into main with a merge commit (as a host's merge button does) and push."""
        git("checkout", "--quiet", "main", cwd=self.work)
        git("merge", "--quiet", "--no-ff", "-m", message, branch, cwd=self.work, env=_identity(committer, committer))
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def _branch(self) -> str:
        return git("rev-parse", "--abbrev-ref", "HEAD", cwd=self.work).strip()

    def _has(self, branch: str) -> bool:
        return bool(git("branch", "--list", branch, cwd=self.work).strip())

    def production_with(self, old: str, new: str) -> dict[str, str | None]:
        """The production document with one text replaced (it must be there)."""
        text = (self.work / PRODUCTION).read_text()
        assert old in text, f"{old!r} is not in {PRODUCTION}"
        return {PRODUCTION: text.replace(old, new)}

    # -- the pipeline ---------------------------------------------------------------------------------

    def plan(self, sha: str, environment: str = "production") -> int:
        """Ask for a sync of `sha` (as a person would) and let a worker plan it through the gate."""
        with self.services.database.session() as session:
            repository = session.get_one(Repository, self.repository_id)
            revision = repositories.revision_by_sha(self.services, session, repository, sha)
            env = next((e for e in repository.environments if e.name == environment), None)
            if env is None:
                env = Environment(repository_id=repository.id, name=environment)
                session.add(env)
                session.flush()
            sync, _ = syncs.request(session, env, revision, SyncTrigger.MANUAL)
            session.flush()
            sync_id = sync.id
        pipeline.plan_sync(self.services, sync_id)
        return sync_id

    def apply(self, sync_id: int) -> str:
        pipeline.apply_sync(self.services, sync_id)
        return self.status(sync_id)

    def status(self, sync_id: int) -> str:
        with self.services.database.session() as session:
            return session.get_one(Sync, sync_id).status.value

    def bootstrap(self) -> str:
        """Production's first sync (approved by bob, applied): the state later stories start from."""
        head = git("rev-parse", "HEAD", cwd=self.work).strip()
        sync_id = self.plan(head)
        assert self.status(sync_id) == "awaiting_approval", "production waits for approval on its first sync"
        answer = self.approve(sync_id, "bob")
        assert answer.status_code == 200, answer.text
        assert self.apply(sync_id) == "succeeded"
        self.queue.sent.clear()
        return head

    # -- the API ---------------------------------------------------------------------------------------

    def approve(self, sync_id: int, user: str, **body: Any) -> httpx.Response:
        answer: httpx.Response = self.http.post(f"/api/v1/syncs/{sync_id}/approve", headers=self.auth(user),
                                                json=body or None)
        return answer

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def link(self, user: str, **ids: str) -> None:
        """An admin links a user to their Git host accounts by stable id."""
        answer = self.http.patch(f"/api/v1/users/{user}", headers=self.auth("root"), json=ids)
        assert answer.status_code == 200, answer.text

    # -- the Git host's webhooks ---------------------------------------------------------------------

    def deliver(self, event: str, payload: dict[str, Any]) -> httpx.Response:
        """A signed GitHub delivery about `acme/infra`."""
        payload = {**payload, "repository": {"full_name": "acme/infra", "clone_url": str(self.bare)}}
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer: httpx.Response = self.http.post("/webhooks/github", content=body, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature,
            "Content-Type": "application/json"})
        return answer


def account(host: GitHostServer, login: str) -> dict[str, Any]:
    return {"login": login, "id": host.id_of(login)}


def pull_request_payload(host: GitHostServer, action: str, number: int, author: str, head: str, *,
                         fork: str | None = None, merged: bool = False, merge_sha: str | None = None,
                         base: str | None = None) -> dict[str, Any]:
    """A GitHub `pull_request` payload as GitHub sends it (trimmed to what Tidegate reads)."""
    return {"action": action, "number": number, "sender": account(host, author), "pull_request": {
        "number": number, "title": "Change production", "user": account(host, author), "merged": merged,
        "merge_commit_sha": merge_sha,
        "head": {"sha": head, "ref": "feature", "repo": {"full_name": fork or "acme/infra"}},
        "base": {"sha": base or "0" * 40, "ref": "main", "repo": {"full_name": "acme/infra"}}}}


def _identity(author: str, committer: str) -> dict[str, str]:
    def split(person: str) -> tuple[str, str]:
        name, _, email = person.partition(" <")
        return name, email.rstrip(">")

    (author_name, author_email), (committer_name, committer_email) = split(author), split(committer)
    return {"GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": committer_name, "GIT_COMMITTER_EMAIL": committer_email}


@contextmanager
def stack(tmp: Path, redis: EmbeddedRedis, host: GitHostServer | None = None) -> Iterator[Stack]:
    """The example repo registered as `infra` (with `host` as its GitHub when given), the people of
    `PEOPLE` with API tokens, and the API and webhook receivers mounted on one ASGI app."""
    data = tmp / "data"
    database = Database.embedded(data)
    database.upgrade()
    client = redis_client(redis.client_url)
    client.flushall()
    queue, live = Queue(), Live()
    services = Services(database=database, secrets=SecretBox(SecretBox.generate_key()), redis=client,
                        targets=Targets(), data_dir=data, queue=queue)  # type: ignore[arg-type]
    services.stages = lambda name: FakeStage(name, live)  # type: ignore[assignment,return-value]
    bare, work = _config_repo(tmp)
    tokens: dict[str, str] = {}
    with database.session() as session:
        repository = Repository(name="infra", url=str(bare), branch="main", webhook_secret=None)
        if host is not None:
            repository.host, repository.host_api_url = GitHost.GITHUB, host.api_url
            repository.host_repository, repository.host_token = "acme/infra", services.secrets.seal(HOST_TOKEN)
        session.add(repository)
        session.flush()
        repository_id = repository.id
        _people(session, tokens)
    settings = Settings(data)
    app = FastAPI()
    app.include_router(dashboard_router(services, settings))
    app.include_router(webhooks_router(services, settings, previews=queue))
    with TestClient(app) as http:
        yield Stack(services, http, queue, live, bare, work, repository_id, tokens, host)
    database.dispose()


def _config_repo(tmp: Path) -> tuple[Path, Path]:
    """(bare repo, work clone): the example repo, committed once by Ivy, as `main`."""
    bare, work = tmp / "git" / "infra.git", tmp / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    shutil.copytree(EXAMPLE, work, symlinks=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "Bootstrap staging and production", cwd=work,
        env=_identity(BOOTSTRAP_AUTHOR, BOOTSTRAP_AUTHOR))
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work, env=git_env())
    return bare, work


def _people(session: Any, tokens: dict[str, str]) -> None:
    for name, (email, groups, roles) in PEOPLE.items():
        user = create_user(session, name, email=email)
        for group in groups:
            add_member(session, ensure_group(session, group), user)
        for role in roles:
            word, _, scope = role.partition(":")
            bind(session, f"user:{name}", Grant(Role(word), scope or "*"))
        tokens[name] = issue_token(session, user, "stories")[1]
