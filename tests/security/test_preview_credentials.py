"""Previews plan with the read-only credentials the tracked branch names, never with what the PR names.

An environment may name read-only credentials for previews (`spec.preview`, environment variables
of the worker for now). A pull request is code its author controls, so the mapping is read at the
base revision: a PR that points its own preview at the write credentials gets the read-only ones
anyway, and the environment's own (write) credentials never reach the preview's stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from providers.stage import Stage, StageContext, StagePlan
from reconciler.previews import PreviewRequest, compute
from reconciler.runtime import Services
from reconciler.targets import Connection, TargetsError
from store import Database, Repository, SecretBox
from tests.support.git_server import WorkClone, files_of, make_bare_repo
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.settings import Settings
from tidegate.targets import RealTargets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
STAGING = "environments/staging.yaml"
READ_ONLY = {"AWS_ACCESS_KEY_ID": "PREVIEW_AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "PREVIEW_AWS_SECRET_ACCESS_KEY"}


def _with_preview(text: str, mapping: dict[str, str]) -> str:
    entries = ", ".join(f"{name}: {variable}" for name, variable in mapping.items())
    return text.rstrip("\n") + f"\n  preview:\n    infrastructure:\n      env: {{{entries}}}\n"


@dataclass
class RecordingTerraform:
    """Stands in for Terraform's plan: records which credentials a preview handed the stage."""

    seen: list[dict[str, str]] = field(default_factory=list)

    def plan(self, context: StageContext[Any]) -> StagePlan:
        self.seen.append(dict(context.credentials))
        return StagePlan(Stage.INFRASTRUCTURE, [], "digest")

    def apply(self, context: StageContext[Any], plan: StagePlan) -> Any:
        raise AssertionError("previews never apply")

    def observe(self, context: StageContext[Any]) -> Any:
        raise AssertionError("previews never observe")


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-WRITE-KEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "write-secret-of-the-environment")
    monkeypatch.setenv("PREVIEW_AWS_ACCESS_KEY_ID", "AKIA-READ-ONLY")
    monkeypatch.setenv("PREVIEW_AWS_SECRET_ACCESS_KEY", "read-only-secret-for-previews")


@pytest.mark.usefixtures("worker_env")
def test_a_pull_request_cannot_point_its_preview_at_the_write_credentials(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    staging = (EXAMPLE / STAGING).read_text()
    bare = tmp_path / "infra.git"
    base = make_bare_repo(bare, {**files_of(EXAMPLE), STAGING: _with_preview(staging, READ_ONLY)})
    work = WorkClone(bare, tmp_path / "work", branch="feature")
    head = work.commit("Preview with the real keys", {STAGING: _with_preview(staging, {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"})})
    work.push(force=True)
    data = tmp_path / "data"
    database = Database.embedded(data)
    database.upgrade()
    terraform = RecordingTerraform()
    services = Services(database=database, secrets=SecretBox(SecretBox.generate_key()),
                        redis=redis_client(redis_server.client_url), targets=RealTargets(Settings(data_dir=data)),
                        data_dir=data, queue=None,  # type: ignore[arg-type]
                        stages=lambda name: terraform)  # type: ignore[arg-type,return-value]
    repository = Repository(id=1, name="infra", url=str(bare), branch="main")

    report = compute(services, repository, PreviewRequest(repository_id=1, number=3, head_sha=head, base_sha=base),
                     tmp_path / "previews")
    database.dispose()

    assert terraform.seen, report
    assert all(seen == {"AWS_ACCESS_KEY_ID": "AKIA-READ-ONLY", "AWS_SECRET_ACCESS_KEY": "read-only-secret-for-previews"}
               for seen in terraform.seen), terraform.seen
    assert report.environments["staging"].credentials == {"infrastructure": "preview"}


@pytest.mark.usefixtures("worker_env")
def test_preview_credentials_the_worker_does_not_have_are_an_error_naming_the_field(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PREVIEW_AWS_SECRET_ACCESS_KEY")
    targets = RealTargets(Settings(data_dir=tmp_path))

    with pytest.raises(TargetsError, match=r"staging: spec\.preview\.infrastructure\.env names "
                                           r"PREVIEW_AWS_SECRET_ACCESS_KEY, not set"):
        targets.preview("infra", "staging", "infrastructure", Connection({}, {}), {"env": READ_ONLY})
