"""Two machines that share only the database: one plans production, the other applies what was approved.

Worker A and worker B each have their own data directory (checkouts, runs, Terraform workspaces)
and their own connection to one store; their Redis is the shared broker's. A plans production
(real Terraform against moto with its state in S3, a SOPS-encrypted Secret and a ConfigMap for the
API emulator that stands for an existing cluster); the plan waits for approval; Bob approves; A's
data directory is deleted, as a lost machine's would be; B applies. B must apply A's saved plan
file — the same bytes, whose sha256 the plan recorded — and A's rendered manifests, and Terraform's
state must move exactly once. Then the approved plan is tampered with between approval and apply
in three ways; each time B refuses with a clear error and neither the state nor the cluster moves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from reconciler import approvals, pipeline, syncs
from reconciler.rendering.age import generate_identity
from reconciler.rendering.sops import find_sops
from reconciler.runtime import Services
from reconciler.secrets import Scope, StoredSecrets, set_secret
from reconciler.syncs import L
from reconciler.targets import Connection
from repo_schema.models import ConfigurationSpec
from sandbox.aws import AwsEndpoints, AwsSandbox
from sandbox.kube.runner import KubeSandbox
from sandbox.kube.runner import kubeconfig as emulator_kubeconfig
from store import (
    ApprovalDecision,
    AuditEvent,
    Database,
    Environment,
    Plan,
    Repository,
    Revision,
    Sealed,
    SecretBox,
    Stage,
    StageStatus,
    Sync,
    SyncStageResult,
    SyncTrigger,
)
from tests.reconciler.conftest import add_people, principal
from tests.support.doubles import RecordingQueue
from tests.support.git_server import commit_and_push, git
from tidegate.redis_server import EmbeddedRedis, redis_client

pytestmark = pytest.mark.integration

REPOSITORY, ENVIRONMENT = "infra", "production"
STATE_KEY = f"anyworker/{ENVIRONMENT}/terraform.tfstate"
DB_PASSWORD = "tfvar-db-pa55word-9f3e"
SECRET_PASSWORD = "sops-web-secret-pa55word-41c7"
AUTHOR = "Dana Developer <dana@example.com>"

MAIN_TF = """\
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
  backend "s3" {}
}

variable "name" { type = string }
variable "tier" { type = string }
variable "db_password" {
  type      = string
  sensitive = true
}

provider "aws" {
  region = "us-east-1"
}

resource "aws_s3_bucket" "app" {
  bucket = var.name
  tags   = { tier = var.tier }
}

resource "aws_s3_object" "db_password" {
  bucket  = aws_s3_bucket.app.id
  key     = "db-password"
  content = var.db_password
}

output "bucket" { value = aws_s3_bucket.app.bucket }
"""


def environment_yaml(tier: str) -> str:
    spec = {
        "decryption": {"provider": "sops", "secretRef": "sops-age"},
        "infrastructure": {"path": "terraform", "vars": {
            "name": "any-worker-app", "tier": tier, "db_password": {"secretRef": "db-password"}}},
        "cluster": {"kubeconfigFrom": {"secret": "cluster-kubeconfig"}},
        "workloads": [{"name": "web", "path": "apps/web", "namespace": "web"}],
        "approval": {"required": True, "minApprovals": 1, "approvers": ["group:platform-leads"]},
    }
    return yaml.safe_dump({"apiVersion": "tidegate.dev/v1alpha1", "kind": "Environment",
                           "metadata": {"name": ENVIRONMENT}, "spec": spec}, sort_keys=False)


def workload_yaml(mode: str) -> str:
    return ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-settings\n  namespace: web\n"
            f"data:\n  mode: {mode}\n")


class TwoMachineTargets:
    """What the composition root gives one worker's stages (as tidegate/targets.py's SandboxTargets
    does): moto's endpoints for the provider and the S3 backend, the stored secrets the repo names,
    and the kubeconfig stored for the cluster. Terraform's workspaces live in this worker's data dir."""

    def __init__(self, aws: AwsEndpoints, secrets: StoredSecrets, data_dir: Path) -> None:
        self.aws, self.secrets, self.data_dir = aws, secrets, data_dir

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        value = self.secrets.resolve(repository, environment, name)
        assert value is not None, f"{where}: no stored secret {name}"
        return value

    def infrastructure(self, repository: str, environment: str) -> Connection:
        return Connection({"terraform_plugin_dirs": os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", ""),
                           "terraform_workspaces": str(self.data_dir / "runs" / repository / "workspaces"),
                           **self.aws.stage_settings()}, self.aws.stage_credentials())

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        raise AssertionError("this environment has no configuration stage")

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        assert kubeconfig is not None
        return Connection({}, {"kubeconfig": kubeconfig})

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        raise AssertionError("no previews here")


@dataclass
class Machines:
    """The shared parts (store file, key, moto, the cluster, the git repo) and the two workers."""

    shared: Path
    bare: Path
    aws: AwsEndpoints
    kube: KubeSandbox
    a: Services
    b: Services
    environment_id: int
    first_head: str

    def state_serial(self) -> int | None:
        s3 = self.aws.client("s3")
        try:
            body = s3.get_object(Bucket=self.aws.bucket, Key=STATE_KEY)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return int(json.loads(body)["serial"])

    def live(self, path: str) -> dict[str, Any]:
        response = httpx.get(f"{self.kube.url}{path}", headers={"Authorization": f"Bearer {self.kube.token}"},
                             verify=ssl.create_default_context(cafile=str(self.kube.ca_file)))
        data: dict[str, Any] = response.json()
        return data

    def request_sync(self, sha: str) -> int:
        with self.a.database.session() as session:
            env = session.get_one(Environment, self.environment_id)
            revision = session.scalars(select(Revision).where(Revision.sha == sha)).one_or_none()
            if revision is None:
                revision = Revision(repository_id=env.repository_id, ref="main", sha=sha, author=AUTHOR,
                                    message="change", committed_at=datetime.now(UTC))
                session.add(revision)
                session.flush()
            sync, _ = syncs.request(session, env, revision, SyncTrigger.MANUAL)
            session.flush()
            return sync.id

    def plan_on_a_and_approve(self, sha: str) -> int:
        """Worker A plans; Bob approves (on any machine: the decision is the store's)."""
        sync_id = self.request_sync(sha)
        pipeline.plan_sync(self.a, sync_id)
        assert status(self.a, sync_id)[0] is L.AWAITING_APPROVAL, status(self.a, sync_id)
        approvals.decide(self.a, sync_id, principal(self.a, "bob"), ApprovalDecision.APPROVE)
        assert status(self.a, sync_id)[0] is L.APPROVED
        return sync_id


def status(services: Services, sync_id: int) -> tuple[L, str | None]:
    with services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        return sync.status, sync.error


def stage_row(services: Services, sync_id: int, stage: Stage) -> SyncStageResult:
    with services.database.session() as session:
        return session.scalars(select(SyncStageResult).where(SyncStageResult.sync_id == sync_id,
                                                             SyncStageResult.stage == stage)).one()


def stored_plan(services: Services, sync_id: int) -> tuple[Plan, dict[str, Any]]:
    """The sync's plan row and its payload as the key opens it (what the test may read, people may not)."""
    with services.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None and plan.payload is not None
        return plan, json.loads(services.secrets.unseal(plan.payload))


def make_repo(bare: Path, recipient: str, scratch: Path) -> str:
    """The config repo with its Secret SOPS-encrypted, pushed to a bare repository by Dana."""
    work = scratch / "work"
    files = {
        "tidegate.yaml": "apiVersion: tidegate.dev/v1alpha1\nkind: RepositoryConfig\nspec:\n  terraform:\n"
                         "    backend: {type: s3, bucket: tidegate-state, region: us-east-1, "
                         "dynamodbTable: tidegate-locks, keyPrefix: anyworker/}\n",
        ".sops.yaml": f"creation_rules:\n  - path_regex: secret\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n"
                      f"    age: {recipient}\n",
        f"environments/{ENVIRONMENT}.yaml": environment_yaml("one"),
        "terraform/main.tf": MAIN_TF,
        "apps/web/workload.yaml": workload_yaml("planned-on-a"),
        "apps/web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-database\n  namespace: web\n"
                                f"type: Opaque\nstringData:\n  password: {SECRET_PASSWORD}\n",
    }
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    done = subprocess.run([str(find_sops()), "--encrypt", "--in-place", "apps/web/secret.yaml"], cwd=work,
                          capture_output=True, env={"HOME": "/nonexistent"}, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    name, _, email = AUTHOR.partition(" <")
    identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"),
                "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "production", cwd=work, env=identity)
    git("push", "--quiet", str(bare), "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def worker(shared: Path, key: str, redis: EmbeddedRedis, aws: AwsEndpoints, data_dir: Path) -> Services:
    """One machine's worker: its own data dir and its own connection pool to the shared store."""
    database = Database(f"sqlite:///{shared / 'tidegate.db'}")
    box = SecretBox(key)
    return Services(database=database, secrets=box, redis=redis_client(redis.client_url),
                    targets=TwoMachineTargets(aws, StoredSecrets(database, box), data_dir), data_dir=data_dir,
                    queue=RecordingQueue())


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Machines]:
    base = tmp_path_factory.mktemp("two-machines")
    shared = base / "store"
    shared.mkdir(mode=0o700)
    key = SecretBox.generate_key()
    identity, recipient = generate_identity()
    head = make_repo(base / "infra.git", recipient, base)
    redis_client(redis_server.client_url).flushall()
    moto = AwsSandbox()
    aws = moto.start()
    try:
        with KubeSandbox(controller_delay=None) as kube:
            a = worker(shared, key, redis_server, aws, base / "machine-a")
            b = worker(shared, key, redis_server, aws, base / "machine-b")
            a.database.upgrade()
            assert kube.certs is not None
            kubeconfig = yaml.safe_dump(emulator_kubeconfig(kube.url, kube.token, kube.certs.ca_pem))
            with a.database.session() as session:
                repository = Repository(name=REPOSITORY, url=str(base / "infra.git"), branch="main")
                session.add(repository)
                session.flush()
                env = Environment(repository_id=repository.id, name=ENVIRONMENT)
                session.add(env)
                add_people(session, "platform-leads", "alice", "bob")
                scope = Scope(REPOSITORY, ENVIRONMENT)
                for name, value in (("sops-age", identity), ("db-password", DB_PASSWORD),
                                    ("cluster-kubeconfig", kubeconfig)):
                    set_secret(session, a.secrets, name, scope, value, actor="root")
                session.flush()
                environment_id = env.id
            yield Machines(shared, base / "infra.git", aws, kube, a, b, environment_id, head)
            a.database.dispose()
            b.database.dispose()
    finally:
        moto.stop()


@dataclass(frozen=True)
class Applied:
    sync_id: int
    plan_payload: dict[str, Any]
    plan_summary: dict[str, Any]
    serial_at_plan: int | None
    serial_after: int | None
    manifests_written: list[dict[str, Any]]


@pytest.fixture(scope="module")
def applied(machines: Machines) -> Applied:
    """A plans and is approved; A's machine is lost; B applies."""
    sync_id = machines.plan_on_a_and_approve(machines.first_head)
    serial_at_plan = machines.state_serial()
    plan, payload = stored_plan(machines.a, sync_id)
    shutil.rmtree(machines.a.data_dir)  # the planning machine is gone: only the store remains
    machines.kube.clear_requests()
    pipeline.apply_sync(machines.b, sync_id)
    writes = [r for r in machines.kube.writes() if not r.get("dry_run")]
    return Applied(sync_id, payload, dict(plan.stages), serial_at_plan, machines.state_serial(), writes)


def test_the_other_machine_applied_the_approved_plan_and_the_environment_is_synced(
        machines: Machines, applied: Applied) -> None:
    state, error = status(machines.b, applied.sync_id)
    assert (state, error) == (L.SUCCEEDED, None), error
    assert not machines.a.data_dir.exists(), "nothing of machine A was needed"
    assert [stage_row(machines.b, applied.sync_id, stage).status for stage in (Stage.INFRASTRUCTURE, Stage.WORKLOADS)] \
        == [StageStatus.SUCCEEDED, StageStatus.SUCCEEDED]


def test_b_applied_the_very_plan_file_a_saved_and_terraform_state_moved_once(
        machines: Machines, applied: Applied) -> None:
    artefact = applied.plan_payload["stages"]["infrastructure"]["artefact"]
    planned_bytes = base64.b64decode(artefact["data"])
    approved = applied.plan_summary["infrastructure"]["artifact_sha256"]
    assert hashlib.sha256(planned_bytes).hexdigest() == artefact["sha256"] == approved
    ran = stage_row(machines.b, applied.sync_id, Stage.INFRASTRUCTURE).summary
    assert ran["artifact_sha256"] == approved, "B ran the bytes A saved, not a plan of its own"
    assert (applied.serial_at_plan, applied.serial_after) == (None, 1), "one apply wrote the state, once"
    assert not list(machines.b.data_dir.rglob("*.tfplan")), "the plan file left B's disk after the apply"
    stored = machines.aws.client("s3").get_object(Bucket="any-worker-app", Key="db-password")["Body"].read()
    assert stored == DB_PASSWORD.encode(), "the saved plan carried the sensitive variable to B's apply"


def test_b_applied_the_manifests_a_rendered(machines: Machines, applied: Applied) -> None:
    rendered = {f"{o['body']['kind']}/{o['body']['metadata']['name']}": o["body"]
                for o in applied.plan_payload["stages"]["workloads"]["details"]["objects"]}
    assert sorted(rendered) == ["ConfigMap/web-settings", "Namespace/web", "Secret/web-database"]
    live_settings = machines.live("/api/v1/namespaces/web/configmaps/web-settings")
    assert live_settings["data"] == rendered["ConfigMap/web-settings"]["data"] == {"mode": "planned-on-a"}
    live_secret = machines.live("/api/v1/namespaces/web/secrets/web-database")
    body = rendered["Secret/web-database"]
    planned = body.get("stringData") or {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    live = {k: base64.b64decode(v).decode() for k, v in live_secret["data"].items()}
    assert live == planned == {"password": SECRET_PASSWORD}
    written = sorted({f"{w['resource']}/{w['name']}" for w in applied.manifests_written
                      if w["namespace"] == "web" or (w["resource"], w["name"]) == ("namespaces", "web")})
    assert written == ["configmaps/web-settings", "namespaces/web", "secrets/web-database"], \
        "each rendered object written (Tidegate's own inventory, in tidegate-system, aside)"


def test_the_approved_plan_is_in_the_store_only_encrypted(machines: Machines, applied: Applied) -> None:
    """The saved plan file holds the sensitive variable unmasked and the manifests hold the decrypted
    Secret: neither is anywhere in the database files as plain text."""
    plan, _ = stored_plan(machines.b, applied.sync_id)
    assert plan.payload is not None and plan.payload.token.startswith(b"gAAAAA"), "a Fernet token"
    files = [path for path in machines.shared.iterdir() if path.name.startswith("tidegate.db")]
    assert files
    for path in files:
        raw = path.read_bytes()
        for plain in (DB_PASSWORD, SECRET_PASSWORD):
            assert plain.encode() not in raw, f"{plain!r} in plain text in {path.name}"
            assert base64.b64encode(plain.encode()) not in raw, f"{plain!r} base64-encoded in {path.name}"
        assert b"tfconfig/" not in raw, "no saved plan file (a zip holding tfplan, tfstate, tfconfig/) in the clear"


def _alter_ciphertext(services: Services, plan: Plan) -> None:
    assert plan.payload is not None
    token = bytearray(plan.payload.token)
    token[len(token) // 2] = ord("A") if token[len(token) // 2] != ord("A") else ord("B")
    plan.payload = Sealed(bytes(token))


def _reseal(change: Callable[[dict[str, Any]], None]) -> Callable[[Services, Plan], None]:
    """Change the payload and seal it again with the key: only the recorded digest can tell."""
    def tamper(services: Services, plan: Plan) -> None:
        assert plan.payload is not None
        payload = json.loads(services.secrets.unseal(plan.payload))
        change(payload["stages"]["infrastructure"]["artefact"])
        plan.payload = services.secrets.seal(json.dumps(payload))
    return tamper


def _other_bytes(artefact: dict[str, Any]) -> None:
    data = bytearray(base64.b64decode(artefact["data"]))
    data[-20] ^= 0xFF
    artefact["data"] = base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize(("tamper", "refusal"), [
    (_alter_ciphertext, "cannot be read back from the store"),
    (_reseal(_other_bytes), "does not match the sha256 recorded when it was planned"),
    (_reseal(lambda artefact: artefact.update(data=None)), "is missing from the store"),
], ids=["sealed-payload-altered", "plan-file-altered", "plan-file-missing"])
def test_a_tampered_or_missing_plan_is_refused_and_nothing_is_applied(
        machines: Machines, applied: Applied, tamper: Callable[[Services, Plan], None], refusal: str) -> None:
    head = commit_and_push(machines.bare, {f"environments/{ENVIRONMENT}.yaml": environment_yaml("two"),
                                           "apps/web/workload.yaml": workload_yaml("changed")}, "a change")
    sync_id = machines.plan_on_a_and_approve(head)
    with machines.a.database.session() as session:
        plan = session.get_one(Sync, sync_id).plan
        assert plan is not None
        tamper(machines.a, plan)
    serial = machines.state_serial()
    machines.kube.clear_requests()

    pipeline.apply_sync(machines.b, sync_id)

    state, error = status(machines.b, sync_id)
    assert state is L.FAILED and error is not None and refusal in error and "nothing was applied" in error
    assert machines.state_serial() == serial, "Terraform applied nothing"
    assert [w for w in machines.kube.writes() if not w.get("dry_run")] == [], "the cluster got nothing"
    assert machines.live("/api/v1/namespaces/web/configmaps/web-settings")["data"] == {"mode": "planned-on-a"}
    assert not list(machines.b.data_dir.rglob("*.tfplan")), "no refused plan file was left on B's disk"
    with machines.b.database.session() as session:
        rows = {r.stage: r.status for r in session.get_one(Sync, sync_id).stage_results}
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "plan.refused",
                                                           AuditEvent.target.endswith(f"#sync-{sync_id}"))).one()
    assert StageStatus.SUCCEEDED not in rows.values() and StageStatus.APPLYING not in rows.values(), rows
    assert refusal in refused.details["reason"], "the refusal is audited"
