"""A sync whose infrastructure stage takes a few seconds, through the real pipeline and a real
`terraform`: what the tests of live logs (`tidegate logs -f`, the dashboard's sync page) watch while
the stage still applies."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.stage import Action, Change, Outcome, Stage, StageContext, StagePlan, StageResult
from providers.terraform import TerraformBackend, TerraformSpec, TerraformStage
from reconciler import syncs
from reconciler.runtime import Services
from reconciler.targets import Connection
from store import Environment, Repository, Revision, SyncTrigger
from tests.reconciler.conftest import EXAMPLE, make_repo_by
from tests.support.git_server import files_of

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


def manual_sync_of_staging(services: Services, tmp_path: Path) -> int:
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


class Targets:
    """Connection settings of the example's stages: none needed here."""

    def infrastructure(self, repository: str, environment: str) -> Connection:
        return Connection({}, {})

    def configuration(self, repository: str, environment: str, nodes: Any, spec: Any) -> Connection:
        return Connection({}, {})

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        return Connection({}, {"kubeconfig": kubeconfig or ""})

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        raise AssertionError(f"no stored secrets here ({where})")

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Any) -> Connection:
        return connection
