"""Reverting a bad rollout: after a good sync, a workloads apply creates a Deployment that never
becomes healthy (the sync fails on its health wait); the next revision removes it, and it is pruned.

The objects the failed apply created are in the inventory it reported; that recorded inventory is
what the next plan prunes by. Real parts: git, the store, the Kubernetes stage against the API
emulator (with its controllers off, nothing ever becomes available).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler import pipeline, syncs
from reconciler.runtime import Services, default_stages
from reconciler.syncs import L
from reconciler.targets import Connection
from repo_schema.models import ConfigurationSpec
from sandbox.kube.runner import KubeSandbox
from sandbox.kube.runner import kubeconfig as emulator_kubeconfig
from store import Environment, Repository, Revision, Sync, SyncTrigger
from tests.support.git_server import commit_and_push, make_bare_repo

ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec:
  workloads:
    - {name: app, path: apps/app, namespace: app}
  cluster: {kubeconfigFrom: {secret: dev-kubeconfig}}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n"
CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: info}\n"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
"""


class EmulatorTargets:
    """The cluster an existing-cluster environment names (here: the API emulator)."""

    def __init__(self, kube: KubeSandbox) -> None:
        assert kube.certs is not None
        self.kubeconfig = yaml.safe_dump(emulator_kubeconfig(kube.url, kube.token, kube.certs.ca_pem))

    def infrastructure(self, repository: str, environment: str) -> Connection:
        raise AssertionError("no infrastructure stage")

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        raise AssertionError("no configuration stage")

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        return Connection({}, {"kubeconfig": self.kubeconfig})

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        assert (name, where) == ("dev-kubeconfig", "spec.cluster.kubeconfigFrom.secret")
        return self.kubeconfig

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        return connection


@pytest.fixture
def kube() -> Iterator[KubeSandbox]:
    with KubeSandbox(controller_delay=None) as sandbox:
        yield sandbox


def _sync(services: Services, repository_id: int, sha: str) -> int:
    with services.database.session() as session:
        revision = Revision(repository_id=repository_id, ref="main", sha=sha, author="A <a@example.test>",
                            message="change", committed_at=datetime.now(UTC))
        session.add(revision)
        env = session.query(Environment).filter_by(repository_id=repository_id, name="dev").one()
        sync, _ = syncs.request(session, env, revision, SyncTrigger.POLL)
        session.flush()
        return sync.id


def _exists(kube: KubeSandbox, path: str) -> bool:
    """Whether the API server has the object (asked over HTTPS as any client would)."""
    answer = httpx.get(kube.url + path, headers={"Authorization": f"Bearer {kube.token}"}, verify=str(kube.ca_file))
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200


def _run(services: Services, sync_id: int) -> Sync:
    pipeline.plan_sync(services, sync_id)
    pipeline.apply_sync(services, sync_id)
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        session.expunge(sync)
        return sync


def test_objects_a_failed_rollout_created_are_pruned_when_the_next_revision_removes_them(
        services: Services, kube: KubeSandbox, tmp_path: Path) -> None:
    services.targets = EmulatorTargets(kube)
    services.stages = default_stages
    services.health_timeout = 2.0
    bare = tmp_path / "repo.git"
    good = make_bare_repo(bare, {"environments/dev.yaml": ENVIRONMENT, "apps/app/namespace.yaml": NAMESPACE,
                                 "apps/app/config.yaml": CONFIG})
    with services.database.session() as session:
        repository = Repository(name="infra", url=str(bare), branch="main")
        session.add(repository)
        session.flush()
        session.add(Environment(repository_id=repository.id, name="dev"))
        repository_id = repository.id
    assert _run(services, _sync(services, repository_id, good)).status is L.SUCCEEDED
    bad = commit_and_push(bare, {"apps/app/deployment.yaml": DEPLOYMENT}, "Roll out web")

    rollout = _run(services, _sync(services, repository_id, bad))
    assert rollout.status is L.FAILED and "not healthy" in (rollout.error or ""), rollout.error
    assert _exists(kube, "/apis/apps/v1/namespaces/app/deployments/web")

    reverted = commit_and_push(bare, {"apps/app/deployment.yaml": None}, "Revert the web rollout")
    fixed = _run(services, _sync(services, repository_id, reverted))

    assert fixed.status is L.SUCCEEDED, fixed.error
    assert not _exists(kube, "/apis/apps/v1/namespaces/app/deployments/web")
    assert _exists(kube, "/api/v1/namespaces/app/configmaps/settings")
