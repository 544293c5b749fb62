"""`tidegate up --no-sandbox` against targets that exist on their own, configured the way teams write it.

The test starts what would be real infrastructure elsewhere — moto as a plain AWS endpoint the
repo's own provider block names, SSH nodes in network namespaces, a Kubernetes API emulator that
stands for an existing cluster — and then acts only as a user: `tidegate init`, `tidegate secret
set` for the SSH key, the nodes' host keys, the kubeconfig, an AWS key, an API token and the age
identity SOPS files are encrypted for, then `tidegate up --no-sandbox --exit-when-synced`. Nothing
in Tidegate substitutes an endpoint: what runs is what the repo and the stored secrets say.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from reconciler import previews
from reconciler.previews import PreviewRequest
from reconciler.rendering.age import generate_identity
from reconciler.rendering.sops import find_sops
from sandbox.aws import AwsEndpoints, AwsSandbox
from sandbox.kube.runner import KubeSandbox
from sandbox.kube.runner import kubeconfig as emulator_kubeconfig
from sandbox.nodes import SshNodes
from store import GitHost, Repository
from tests.support.git_host import git_host_server
from tests.support.redis_server import start_redis
from tidegate.serve import create_app
from tidegate.settings import Settings
from tidegate.worker import build_services

pytestmark = pytest.mark.integration

REPOSITORY = "realrepo"
ENVIRONMENT = "real"
BUCKET = "real-targets-e2e"
DB_PASSWORD = "sops-tfvars-db-pa55word"
SECRET_PASSWORD = "sops-secret-web-pa55word"
API_TOKEN = "stored-api-token-5e1f9a"
AWS_SECRET = "stored-aws-secret-key-77aa"
UP_TIMEOUT = 900

MAIN_TF = """\
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
}

variable "aws_endpoint" { type = string }
variable "aws_access_key" { type = string }
variable "aws_secret_key" {
  type      = string
  sensitive = true
}
variable "db_password" {
  type      = string
  sensitive = true
}
variable "bucket" { type = string }
variable "nodes" { type = any }

provider "aws" {
  region                      = "us-east-1"
  access_key                  = var.aws_access_key
  secret_key                  = var.aws_secret_key
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true
  endpoints {
    s3  = var.aws_endpoint
    ssm = var.aws_endpoint
    sts = var.aws_endpoint
  }
}

resource "aws_s3_bucket" "app" {
  bucket = var.bucket
}

# Write-only (Terraform 1.11): the value reaches AWS and never Terraform's state or plan.
resource "aws_ssm_parameter" "db_password" {
  name             = "/${var.bucket}/db-password"
  type             = "SecureString"
  value_wo         = var.db_password
  value_wo_version = 1
}

output "nodes" { value = var.nodes }
output "bucket" { value = aws_s3_bucket.app.bucket }
"""

# First-time configuration in the three shapes that fail a naive check mode, under the node's own root.
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: write the application config
      ansible.builtin.copy:
        dest: "{{ node_prefix }}/app.conf"
        content: "[app]\\nlog_level = {{ log_level }}\\n"
        mode: "0600"
        force: false
    - name: add the API token to it
      ansible.builtin.lineinfile:
        path: "{{ node_prefix }}/app.conf"
        line: "token = {{ api_token }}"
      no_log: true
    - name: install the application (a package-like file)
      ansible.builtin.copy:
        dest: "{{ node_prefix }}/app-bin"
        content: "#!/bin/sh\\necho app\\n"
        mode: "0755"
    - name: enable it (a service-like step on what the install put there)
      ansible.builtin.file:
        path: "{{ node_prefix }}/app-bin"
        state: file
        mode: "0755"
    - name: create the drop-in directory
      ansible.builtin.file:
        path: "{{ node_prefix }}/conf.d"
        state: directory
        mode: "0755"
    - name: template a file into it
      ansible.builtin.template:
        src: drop-in.conf.j2
        dest: "{{ node_prefix }}/conf.d/drop-in.conf"
        mode: "0644"
"""

SECRET_YAML = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: web-database
  namespace: web
type: Opaque
stringData:
  password: {SECRET_PASSWORD}
"""
WORKLOAD = """\
apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
  namespace: web
data:
  mode: real-targets
"""


@dataclass(frozen=True)
class Targets:
    aws: AwsEndpoints
    nodes: SshNodes
    kube: KubeSandbox


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    aws = AwsSandbox()
    with SshNodes(1, base_dir=tmp_path_factory.mktemp("nodes")) as nodes, \
            KubeSandbox(controller_delay=None) as kube:
        try:
            yield Targets(aws.start(), nodes, kube)
        finally:
            aws.stop()


def write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


def environment_yaml(targets: Targets) -> str:
    node = targets.nodes.nodes[0]
    nodes = [{"name": node.name, "address": node.address, "groups": ["nodes"],
              "vars": {"node_prefix": node.node_prefix, "ansible_python_interpreter": "/usr/bin/python3"}}]
    spec = {
        "decryption": {"provider": "sops", "secretRef": "sops-age"},
        "infrastructure": {"path": "terraform", "vars": {
            "aws_endpoint": targets.aws.url, "aws_access_key": "real-e2e-access-key",
            "aws_secret_key": {"secretRef": "aws-secret-key"}, "bucket": BUCKET, "nodes": nodes}},
        "configuration": {
            "playbook": "ansible/site.yml", "inventoryFrom": {"terraformOutput": "nodes"},
            "extraVars": {"log_level": "info", "api_token": {"secretRef": "api-token"}},
            "connection": {"type": "ssh", "user": node.user, "privateKeyRef": {"secret": "deploy-key"},
                           "knownHostsRef": {"secret": "known-hosts"}}},
        "cluster": {"kubeconfigFrom": {"secret": "cluster-kubeconfig"}},
        "workloads": [{"name": "web", "path": "apps/web", "namespace": "web"}],
    }
    return yaml.safe_dump({"apiVersion": "tidegate.dev/v1alpha1", "kind": "Environment",
                           "metadata": {"name": ENVIRONMENT}, "spec": spec}, sort_keys=False)


def make_repo(root: Path, targets: Targets, recipient: str) -> None:
    write(root, {
        "tidegate.yaml": "apiVersion: tidegate.dev/v1alpha1\nkind: RepositoryConfig\n"
                         "spec:\n  terraform:\n    backend: {type: local}\n",
        ".sops.yaml": f"creation_rules:\n  - path_regex: secret\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n"
                      f"    age: {recipient}\n  - path_regex: \\.sops\\.tfvars\\.json$\n    age: {recipient}\n",
        f"environments/{ENVIRONMENT}.yaml": environment_yaml(targets),
        "terraform/main.tf": MAIN_TF,
        "terraform/secrets.sops.tfvars.json": json.dumps({"db_password": DB_PASSWORD}),
        "ansible/site.yml": PLAYBOOK,
        "ansible/drop-in.conf.j2": "# managed by tidegate\nlevel={{ log_level }}\n",
        "apps/web/workload.yaml": WORKLOAD,
        "apps/web/secret.yaml": SECRET_YAML,
    })
    for name in ("apps/web/secret.yaml", "terraform/secrets.sops.tfvars.json"):
        done = subprocess.run([str(find_sops()), "--encrypt", "--in-place", name], cwd=root, capture_output=True,
                              env={"HOME": "/nonexistent"}, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
    identity = {"name": "Real Targets", "email": "real@example.test"}
    env = {**os.environ, "GIT_AUTHOR_NAME": identity["name"], "GIT_AUTHOR_EMAIL": identity["email"],
           "GIT_COMMITTER_NAME": identity["name"], "GIT_COMMITTER_EMAIL": identity["email"]}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "real targets"]):
        subprocess.run(["git", *argv], cwd=root, env=env, check=True)


@dataclass
class User:
    """Runs `tidegate` as someone at a shell would, against one data directory."""

    env: dict[str, str]

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tidegate", *argv], env=self.env, input=stdin, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def ok(self, *argv: str, stdin: str | None = None) -> str:
        done = self.run(*argv, stdin=stdin)
        assert done.returncode == 0, f"tidegate {' '.join(argv)}: {done.stdout}{done.stderr}"
        return done.stdout

    def status(self) -> dict[str, object]:
        views = json.loads(self.ok("status", "-o", "json"))
        return next(view for view in views if view["name"] == ENVIRONMENT)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    data = tmp_path_factory.mktemp("data")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TIDEGATE_", "AWS_")) or key == "TIDEGATE_TERRAFORM_PLUGIN_DIRS"}
    env["TIDEGATE_DATA_DIR"] = str(data)
    return User(env)


@pytest.fixture(scope="module")
def synced(targets: Targets, user: User, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first `tidegate up --no-sandbox --exit-when-synced` over a fresh repo and fresh secrets."""
    identity, recipient = generate_identity()
    root = tmp_path_factory.mktemp("repos") / REPOSITORY
    make_repo(root, targets, recipient)
    kubeconfig = root.parent / "kubeconfig"
    assert targets.kube.certs is not None
    kubeconfig.write_text(yaml.safe_dump(emulator_kubeconfig(targets.kube.url, targets.kube.token,
                                                             targets.kube.certs.ca_pem)))
    key = Path(user.env["TIDEGATE_DATA_DIR"]).parent / "age-identity"
    key.write_text(identity + "\n")
    user.ok("init")
    scope = ["--repo", REPOSITORY, "--env", ENVIRONMENT]
    user.ok("secret", "set", "deploy-key", "--repo", REPOSITORY, "--from-file", str(targets.nodes.private_key))
    user.ok("secret", "set", "known-hosts", *scope, "--from-file", str(targets.nodes.known_hosts))
    user.ok("secret", "set", "cluster-kubeconfig", *scope, "--from-file", str(kubeconfig))
    user.ok("secret", "set", "sops-age", "--repo", REPOSITORY, "--from-file", str(key))
    user.ok("secret", "set", "api-token", *scope, "--stdin", stdin=API_TOKEN)
    user.ok("secret", "set", "aws-secret-key", "--stdin", stdin=AWS_SECRET)

    done = user.run("up", "--no-sandbox", "--repo", str(root), "--exit-when-synced", "--timeout", str(UP_TIMEOUT),
                    timeout=UP_TIMEOUT + 120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs_of(user)}"
    return root


def logs_of(user: User) -> str:
    logs = Path(user.env["TIDEGATE_DATA_DIR"]) / "logs"
    return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in sorted(logs.glob("*.log")))


def test_the_environment_is_synced_at_the_head_without_any_sandbox(synced: Path, user: User) -> None:
    view = user.status()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=synced, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert view["sync_status"] == "Synced", view
    assert view["last_sync_revision"] == head, view


def test_terraform_created_what_the_repo_says_at_the_endpoint_the_repo_names(synced: Path, targets: Targets) -> None:
    s3, ssm = targets.aws.client("s3"), targets.aws.client("ssm")
    assert BUCKET in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    parameter = ssm.get_parameter(Name=f"/{BUCKET}/db-password", WithDecryption=True)["Parameter"]
    assert parameter["Value"] == DB_PASSWORD, "the SOPS-encrypted variables file reached Terraform decrypted"


def test_first_time_configuration_left_the_node_as_the_playbook_says(synced: Path, targets: Targets) -> None:
    root = targets.nodes.nodes[0].root
    assert (root / "app.conf").read_text() == f"[app]\nlog_level = info\ntoken = {API_TOKEN}\n"
    assert (root / "app-bin").stat().st_mode & 0o777 == 0o755
    assert (root / "conf.d" / "drop-in.conf").read_text() == "# managed by tidegate\nlevel=info\n"


def test_the_existing_cluster_got_the_workloads_with_the_secret_decrypted(synced: Path, targets: Targets) -> None:
    kube = targets.kube
    headers = {"Authorization": f"Bearer {kube.token}"}
    secret = httpx.get(f"{kube.url}/api/v1/namespaces/web/secrets/web-database", headers=headers,
                       verify=str(kube.ca_file)).json()
    values = secret.get("data") or {}
    plain = {key: base64.b64decode(value).decode() for key, value in values.items()} or secret.get("stringData")
    assert plain == {"password": SECRET_PASSWORD}
    settings = httpx.get(f"{kube.url}/api/v1/namespaces/web/configmaps/web-settings", headers=headers,
                         verify=str(kube.ca_file)).json()
    assert settings["data"] == {"mode": "real-targets"}


def test_the_plan_said_which_tasks_depend_on_earlier_changes(synced: Path, user: User) -> None:
    view = user.status()
    shown = user.ok("show", str(view["last_sync"]))
    lines = shown.splitlines()
    dependent = {lines[index - 1].split("node-1/", 1)[1] for index, line in enumerate(lines)
                 if line.strip() == "cannot be predicted in check mode — depends on earlier changes"}
    assert dependent == {"add the API token to it", "enable it (a service-like step on what the install put there)"}
    assert any(line.split() == ["create", "node-1/template", "a", "file", "into", "it"] for line in lines), shown
    assert API_TOKEN not in shown


def test_a_second_sync_changes_nothing(synced: Path, user: User) -> None:
    up = subprocess.Popen([sys.executable, "-m", "tidegate", "up", "--no-sandbox", "--repo", str(synced)],
                          env=user.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (Path(user.env["TIDEGATE_DATA_DIR"]) / "redis").exists():
            assert time.monotonic() < deadline and up.poll() is None, "the second `tidegate up` did not start"
            time.sleep(1)
        done = user.run("sync", ENVIRONMENT, "--wait", "--timeout", "600", timeout=720)
        assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{logs_of(user)}"
        sync_id = done.stdout.split("#", 1)[1].split()[0]
        shown = user.ok("show", sync_id)
        for stage in ("infrastructure", "configuration", "workloads"):
            line = next(line for line in shown.splitlines() if line.strip().startswith(f"{stage}:"))
            assert line.strip() == f"{stage}: +0 ~0 -0", shown
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=60)


def forms(value: str) -> set[str]:
    """A secret as it could be written: plain, JSON-escaped, base64 (both alphabets, padded or not)."""
    found = {value, json.dumps(value)[1:-1]}
    for encoded in (base64.b64encode(value.encode()), base64.urlsafe_b64encode(value.encode())):
        found |= {encoded.decode(), encoded.decode().rstrip("=")}
    return {form for form in found if len(form) >= 8}


def secrets_of(targets: Targets, user: User) -> dict[str, str]:
    """Every stored secret and SOPS-decrypted value, by name (multi-line ones by their key material)."""
    found = {"api token": API_TOKEN, "aws secret key": AWS_SECRET, "sops tfvars value": DB_PASSWORD,
             "sops secret value": SECRET_PASSWORD, "cluster token": targets.kube.token,
             "age identity": Path(user.env["TIDEGATE_DATA_DIR"], "..", "age-identity").resolve().read_text().strip()}
    key_lines = [line for line in targets.nodes.private_key.read_text().splitlines() if "PRIVATE KEY" not in line]
    found |= {f"ssh key line {index}": line for index, line in enumerate(key_lines) if len(line) >= 20}
    return found


def written_by_tidegate(data: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(data.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.is_socket():
            yield str(path.relative_to(data)), path.read_bytes()


def test_no_secret_is_written_anywhere_after_a_sync_and_a_preview(synced: Path, user: User, targets: Targets,
                                                                  tmp_path: Path) -> None:
    """The store, every file of the data dir (logs, checkouts, caches, run and work directories),
    the PR comment and status of a preview, the API's answers and the CLI's output hold none of the
    stored secrets, the age identity or a SOPS-decrypted value, in any of their forms."""
    data = Path(user.env["TIDEGATE_DATA_DIR"])
    said = [user.ok("status"), user.ok("history", ENVIRONMENT), user.ok("secret", "list")]
    said += [user.ok("show", str(number)) for number in (1, 2)]
    user.ok("user", "add", "root", "--role", "admin")
    token = user.ok("token", "create", "--user", "root").strip()
    with start_redis(tmp_path / "redis") as redis, \
            git_host_server(GitHost.GITHUB, "acme/realrepo", token="gh-host-token") as host:
        settings = Settings(data_dir=data, redis_url=redis.client_url)
        services = build_services(settings)
        with services.database.session(write=True) as session:
            repository = session.query(Repository).one()
            repository.host, repository.host_api_url = GitHost.GITHUB, host.api_url
            repository.host_repository, repository.host_token = "acme/realrepo", services.secrets.seal("gh-host-token")
            repository_id, base = repository.id, repository.head_sha
        head = commit_on_branch(synced, "feature", "apps/web/workload.yaml",
                                WORKLOAD.replace("mode: real-targets", "mode: previewed"))
        host.add_collaborator("alice", "write")
        host.add_pull(7, author="alice", head_sha=head)
        previews.run(services, PreviewRequest(repository_id=repository_id, number=7, head_sha=head, base_ref="main",
                                              base_sha=base, author="alice"))
        comments = [str(comment.get("body", "")) for comment in host.comments.get(7, {}).values()]
        assert comments and "previewed" in comments[-1], comments
        said += [*comments, json.dumps(host.statuses)]
        with TestClient(create_app(settings, services)) as api:
            headers = {"Authorization": f"Bearer {token}"}
            for path in ("/api/v1/environments", f"/api/v1/environments/{REPOSITORY}/{ENVIRONMENT}",
                         f"/api/v1/environments/{REPOSITORY}/{ENVIRONMENT}/syncs", "/api/v1/syncs/1",
                         "/api/v1/syncs/1/logs", "/api/v1/syncs/2", "/api/v1/previews", "/api/v1/audit",
                         "/api/v1/secrets"):
                answer = api.get(path, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
                said.append(answer.text)

    leaks = [(name, where) for name, value in secrets_of(targets, user).items() for form in forms(value)
             for where, content in [*written_by_tidegate(data), *(("output", text.encode()) for text in said)]
             if form.encode() in content]
    assert leaks == []


def commit_on_branch(root: Path, branch: str, path: str, content: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.test",
           "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@example.test"}
    subprocess.run(["git", "checkout", "-q", "-b", branch], cwd=root, check=True)
    (root / path).write_text(content)
    subprocess.run(["git", "commit", "-q", "-am", "preview me"], cwd=root, env=env, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["git", "checkout", "-q", "main"], cwd=root, check=True)
    return sha
