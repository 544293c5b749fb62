"""The example's staging as `tidegate diff` plans it: a real store, the example repo in a real git
repository, and stand-in stage providers that plan fixed changes (`Planned`), so what the diff shows
is known. Users: `vic` (viewer), for the diff over the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis

from providers.stage import Action, Change, Stage, StageContext, StageFailed, StagePlan
from reconciler.runtime import Services
from store import (
    Database,
    Environment,
    Repository,
    Revision,
    Role,
    RoleBinding,
    SecretBox,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
    User,
)
from tests.reconciler.conftest import EXAMPLE, make_repo_by
from tests.support.doubles import RecordingQueue
from tests.support.git_server import files_of
from tests.support.slow_sync import Targets

CHANGES: dict[Stage, list[Change]] = {
    Stage.INFRASTRUCTURE: [Change(Stage.INFRASTRUCTURE, "aws_instance.node[1]", Action.create,
                                  '+ instance_type = "t3.small"')],
    Stage.CONFIGURATION: [],
    Stage.WORKLOADS: [Change(Stage.WORKLOADS, "apps/Deployment/web/web", Action.update,
                             "@@ spec.replicas @@\n-2\n+3"),
                      Change(Stage.WORKLOADS, "/ConfigMap/web/settings", Action.no_op)],
}


class Planned:
    """A stage that plans `changes` (or fails with `failure`); applying is never asked of it."""

    def __init__(self, name: Stage, changes: dict[Stage, list[Change]], failure: str | None = None) -> None:
        self.name, self.changes, self.failure = name, changes, failure

    def plan(self, context: StageContext[Any]) -> StagePlan:
        if self.failure:
            raise StageFailed(self.failure)
        return StagePlan(self.name, self.changes[self.name], digest=str(self.changes[self.name]))


def plan_with(services: Services, changes: dict[Stage, list[Change]] = CHANGES, failing: Stage | None = None) -> None:
    """Make every stage of `services` plan `changes` (`failing` fails with "no route to host")."""
    services.stages = lambda name: Planned(name, changes,  # type: ignore[assignment,return-value]
                                           "no route to host" if name is failing else None)


def build_diff_world(root: Path, redis: Redis) -> tuple[Services, str]:
    """(services, head SHA): the example's staging at its desired revision, its infrastructure applied
    before (its outputs recorded, so every stage can be planned); the stages plan `CHANGES`."""
    services = Services(database=Database.embedded(root / "data"), secrets=SecretBox(SecretBox.generate_key()),
                        redis=redis, targets=Targets(), data_dir=root / "data", queue=RecordingQueue())
    services.database.upgrade()
    plan_with(services)
    head = make_repo_by(root / "infra.git", files_of(EXAMPLE), "Alice Author <alice@example.com>")
    outputs = {"nodes": [{"name": "n1", "address": "198.51.100.1", "groups": ["nodes"]}],
               "kubeconfig": "apiVersion: v1\nkind: Config\n"}
    with services.database.session() as session:
        repository = Repository(name="infra", url=str(root / "infra.git"), branch="main")
        session.add_all([repository, User(name="vic"), RoleBinding(subject="user:vic", role=Role.VIEWER)])
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
    return services, head
