"""A realistic Tidegate store for dashboard tests, built row by row (no Terraform runs).

A real git config repo (the example repo, two commits by different authors) is registered as
`infra`; `staging` is synced to the head and has an open drift report; `production` runs the older
commit and has a sync of the head awaiting approval with a plan; the dashboard tests add one global
stored secret (`add_stored_secret`). Sealed columns hold recognisable secrets, so tests can prove no
page or response ever shows them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from dashboard.identity import Grant, add_member, bind, create_user, ensure_group, issue_token
from reconciler import secrets
from reconciler.runtime import Services
from store import (
    DriftItemRow,
    DriftReport,
    DriftResolution,
    DriftStatus,
    Environment,
    Health,
    Plan,
    Preview,
    PreviewStatus,
    Repository,
    Revision,
    Role,
    Stage,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
SECRET_OUTPUT = "SECRET-KUBECONFIG-c2VjcmV0"
SECRET_PAYLOAD = "SECRET-PLAN-PAYLOAD-cGF5bG9hZA"
SECRET_STORED = "SECRET-STORED-VALUE-c3RvcmVk"
"""The value of the world's one stored secret (`registry-password`, global): never shown, only its fingerprint."""
PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

PEOPLE: dict[str, tuple[str | None, list[str], list[str]]] = {
    # name: (email, groups, roles)
    "root": ("root@example.com", [], ["admin"]),
    "vera": ("vera@example.com", [], ["viewer"]),
    "otto": ("otto@example.com", [], ["operator"]),
    "paula": ("paula@example.com", ["platform-leads"], ["approver"]),
    "alice": ("alice@example.com", ["platform-leads"], ["approver", "operator"]),
    "andy": ("andy@example.com", [], ["approver"]),
    "sam": ("sam@example.com", [], ["operator:infra/staging"]),
    "nobody": ("nobody@example.com", [], []),
}
"""alice wrote the change production awaits; andy may approve in general but is not in the policy."""


ENVIRONMENT_ADMIN = "ed"
"""An admin of infra/staging only, added by `add_environment_admin` where a test needs one (not in
PEOPLE: tests count on root holding the one admin binding)."""


def git(repo: Path, *args: str, author: str = "Bob Builder <bob@example.com>") -> str:
    name, _, email = author.partition(" <")
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), "GIT_AUTHOR_NAME": name,
           "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
    result = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def make_config_repo(where: Path) -> tuple[Path, str, str]:
    """(path, old sha by Bob, head sha by Alice): the example repo as a real git repository."""
    repo = where / "infra-repo"
    shutil.copytree(EXAMPLE, repo, symlinks=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Bootstrap staging and production")
    old = git(repo, "rev-parse", "HEAD")
    readme = repo / "apps" / "README.md"
    readme.write_text(readme.read_text() + "\nThree web replicas in production.\n")
    alice = "Alice Author <alice@example.com>"
    git(repo, "commit", "-q", "-am", "Scale web to three replicas", author=alice)
    return repo, old, git(repo, "rev-parse", "HEAD")


@dataclass
class World:
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    old_sha: str = ""
    head_sha: str = ""

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


def add_environment_admin(world: World, scope: str = "infra/staging") -> dict[str, str]:
    """`ed` with a role binding `admin` on `scope` (and the world's password); returns ed's API headers
    (not kept in `world.tokens`, which every copy of the world shares)."""
    with world.services.database.session() as session:
        user = create_user(session, ENVIRONMENT_ADMIN, email="ed@example.com", password=PASSWORD)
        bind(session, f"user:{ENVIRONMENT_ADMIN}", Grant(Role.ADMIN, scope))
        token = issue_token(session, user, "tests")[1]
    return {"Authorization": f"Bearer {token}"}


def build_world(services: Services, tmp: Path) -> World:
    repo_path, old, head = make_config_repo(tmp)
    world = World(services, old_sha=old, head_sha=head)
    with services.database.session() as session:
        _people(session, world)
        _environments(session, services, world, repo_path)
    return world


def add_stored_secret(services: Services) -> None:
    """The global stored secret `registry-password` (value SECRET_STORED), set by root.

    Only the dashboard tests' world holds it: other suites build this world too and compare its whole
    audit log, which this adds a `secret.set` entry to."""
    with services.database.session() as session:
        secrets.set_secret(session, services.secrets, "registry-password", secrets.Scope(), SECRET_STORED, "root")


def _people(session: Session, world: World) -> None:
    for name, (email, groups, roles) in PEOPLE.items():
        user = create_user(session, name, email=email, password=PASSWORD)
        for group in groups:
            add_member(session, ensure_group(session, group), user)
        for role in roles:
            text, _, scope = role.partition(":")
            bind(session, f"user:{name}", Grant(Role(text), scope or "*"))
        world.tokens[name] = issue_token(session, user, "tests")[1]


def _stage_rows(services: Services, sync: Sync, start: datetime, *, outcomes: dict[Stage, dict[str, str]]) -> None:
    for index, stage in enumerate(Stage):
        changed = outcomes.get(stage, {})
        counts = {"unchanged": 4}
        for outcome in changed.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        sync.stage_results.append(SyncStageResult(
            stage=stage, status=StageStatus.SUCCEEDED, started_at=start + timedelta(minutes=index),
            finished_at=start + timedelta(minutes=index, seconds=40),
            summary={"plan": f"+{len(changed)} ~0 -0", "counts": counts, "outcomes": changed, "error": None},
            log=f"[{stage.value}] starting\n[{stage.value}] applied {len(changed)} changes\n",
            outputs=services.secrets.seal_json({"kubeconfig": SECRET_OUTPUT})))


PLAN_STAGES = {
    "infrastructure": {"summary": "+0 ~1 -0", "fingerprint": "f-infra", "digest": "d1", "unchanged": 6, "changes": [
        {"address": "aws_security_group.nodes", "action": "update",
         "diff": "  ~ ingress.0.cidr_blocks\n    - 10.0.0.0/16\n    + 10.0.0.0/8\n  ~ password = (sensitive)"}]},
    "configuration": {"summary": "+0 ~0 -0", "fingerprint": "f-conf", "digest": "d2", "unchanged": 3, "changes": []},
    "workloads": {"summary": "+0 ~1 -0", "fingerprint": "f-work", "digest": "d3", "unchanged": 9, "changes": [
        {"address": "apps/Deployment/web/web", "action": "update",
         "diff": "--- live\n+++ desired\n-  replicas: 2\n+  replicas: 3"}]},
}


def _environments(session: Session, services: Services, world: World, repo_path: Path) -> None:
    repo = Repository(name="infra", url=str(repo_path), branch="main", head_sha=world.head_sha,
                      last_polled_at=T0 + timedelta(hours=2))
    session.add(repo)
    session.flush()
    old = Revision(repository_id=repo.id, ref="main", sha=world.old_sha, author="Bob Builder <bob@example.com>",
                   message="Bootstrap staging and production", committed_at=T0)
    head = Revision(repository_id=repo.id, ref="main", sha=world.head_sha, author="Alice Author <alice@example.com>",
                    message="Scale web to three replicas", committed_at=T0 + timedelta(hours=1))
    session.add_all([old, head])
    session.flush()
    staging = Environment(repository_id=repo.id, name="staging", desired_revision_id=head.id,
                          synced_revision_id=head.id, health=Health.HEALTHY)
    production = Environment(repository_id=repo.id, name="production", desired_revision_id=head.id,
                             synced_revision_id=old.id, health=Health.HEALTHY)
    session.add_all([staging, production])
    session.flush()
    workloads = {Stage.WORKLOADS: {"apps/Deployment/web/web": "configured", "/ConfigMap/web/settings": "created"}}
    for env, revision, start in ((staging, old, T0), (staging, head, T0 + timedelta(hours=1, minutes=5)),
                                 (production, old, T0 + timedelta(minutes=30))):
        sync = Sync(environment_id=env.id, revision_id=revision.id, trigger=SyncTrigger.POLL,
                    status=SyncLifecycle.SUCCEEDED, created_at=start, started_at=start,
                    finished_at=start + timedelta(minutes=3))
        _stage_rows(services, sync, start, outcomes=workloads if revision is head else {})
        session.add(sync)
        session.flush()
        world.ids[f"{env.name}_{'head' if revision is head else 'old'}"] = sync.id
    plan = Plan(environment_id=production.id, revision_id=head.id, fingerprint="fp-" + "b" * 60,
                stages=PLAN_STAGES, payload=services.secrets.seal(SECRET_PAYLOAD),
                created_at=T0 + timedelta(hours=1, minutes=10))
    session.add(plan)
    session.flush()
    pending = Sync(environment_id=production.id, revision_id=head.id, plan_id=plan.id, trigger=SyncTrigger.POLL,
                   status=SyncLifecycle.AWAITING_APPROVAL, created_at=T0 + timedelta(hours=1, minutes=9),
                   started_at=T0 + timedelta(hours=1, minutes=9))
    session.add(pending)
    session.flush()
    preview = Preview(repository_id=repo.id, number=42, title="Scale web to four replicas", author="carol",
                      head_sha="c" * 40, status=PreviewStatus.SUCCESS, body="## Tidegate plan",
                      environments={"staging": {"stages": PLAN_STAGES, "errors": {}},
                                    "production": {"stages": PLAN_STAGES, "errors": {}}})
    session.add(preview)
    session.flush()
    world.ids.update(pending=pending.id, plan=plan.id, staging=staging.id, production=production.id,
                     preview=preview.id)
    _drift(session, world, staging, old, head)


def _drift(session: Session, world: World, staging: Environment, old: Revision, head: Revision) -> None:
    for days, count in ((3, 1), (2, 4)):
        resolved = DriftReport(environment_id=staging.id, revision_id=old.id, status=DriftStatus.RESOLVED,
                               resolution=DriftResolution.RESYNCED, created_at=T0 - timedelta(days=days),
                               resolved_at=T0 - timedelta(days=days) + timedelta(hours=1))
        resolved.items = [DriftItemRow(stage=Stage.WORKLOADS, address=f"apps/Deployment/web/web-{n}",
                                    field="/spec/replicas", desired=2, live=3) for n in range(count)]
        session.add(resolved)
    report = DriftReport(environment_id=staging.id, revision_id=head.id, status=DriftStatus.OPEN,
                         created_at=T0 + timedelta(hours=2))
    report.items = [
        DriftItemRow(stage=Stage.WORKLOADS, address="apps/Deployment/web/web", field="/spec/replicas", desired=3,
                  live=5),
        DriftItemRow(stage=Stage.INFRASTRUCTURE, address="aws_security_group.nodes", field="ingress",
                  desired=[{"from_port": 443, "cidr_blocks": ["10.0.0.0/16"]}],
                  live=[{"from_port": 443, "cidr_blocks": ["0.0.0.0/0"]},
                        {"from_port": 22, "cidr_blocks": ["0.0.0.0/0"]}]),
        DriftItemRow(stage=Stage.CONFIGURATION, address="node-1/Write the app config", field="/etc/app/app.conf",
                  desired="max_connections = 256\nlog_level = debug", live="max_connections = 4096\nlog_level = debug"),
    ]
    session.add(report)
    session.flush()
    world.ids["drift"] = report.id
