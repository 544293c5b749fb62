"""A config repo's references to stored secrets reach the stages against real targets: the SSH key
(`privateKeyRef.secret`), an existing cluster's kubeconfig (`kubeconfigFrom.secret`, no Terraform at
all), Terraform variables and Ansible extra vars (`{secretRef: NAME}`) — and nothing else sees them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.ansible.stage import extra_vars_of
from reconciler import contexts, secrets
from reconciler.contexts import Run
from reconciler.desired import DesiredState, check_checkout
from reconciler.rendering.age import generate_identity
from reconciler.rendering.sops import find_sops
from reconciler.secrets import Scope, StoredSecrets
from reconciler.targets import TargetsError
from repo_schema.loader import check_repo, load_repo
from store import Database, SecretBox
from tidegate.settings import Settings
from tidegate.targets import RealTargets

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://k8s.example:6443'}}]\n"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nstored-key-material\n-----END OPENSSH PRIVATE KEY-----\n"
DB_PASSWORD = "tf-var-password-from-the-store"
API_TOKEN = "ansible-extra-var-token-from-the-store"

ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: staging}
spec:
  infrastructure:
    path: terraform
    vars:
      cluster_name: staging
      db_password: {secretRef: db-password}
  configuration:
    playbook: ansible/site.yml
    inventoryFrom: {terraformOutput: nodes}
    extraVars:
      log_level: debug
      api_token: {secretRef: api-token}
    connection:
      user: deploy
      privateKeyRef: {secret: deploy-key}
  cluster:
    kubeconfigFrom: {secret: staging-kubeconfig}
  workloads:
    - {name: web, path: apps/web}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    files = {
        "environments/staging.yaml": ENVIRONMENT,
        "terraform/main.tf": 'variable "cluster_name" {}\nvariable "db_password" { sensitive = true }\n'
                             'output "nodes" { value = [] }\n',
        "ansible/site.yml": "- hosts: all\n  tasks: []\n",
        "apps/web/deployment.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[StoredSecrets]:
    database = Database.embedded(tmp_path / "data")
    database.upgrade()
    yield StoredSecrets(database, SecretBox(SecretBox.generate_key()))
    database.dispose()


def put(stored: StoredSecrets, name: str, value: str, scope: Scope) -> None:
    with stored.database.session(write=True) as session:
        secrets.set_secret(session, stored.box, name, scope, value, "test")


@pytest.fixture
def all_set(stored: StoredSecrets) -> StoredSecrets:
    put(stored, "staging-kubeconfig", KUBECONFIG, Scope("infra", "staging"))
    put(stored, "deploy-key", SSH_KEY, Scope("infra"))
    put(stored, "db-password", DB_PASSWORD, Scope("infra", "staging"))
    put(stored, "api-token", API_TOKEN, Scope())
    return stored


def run(repo: Path, tmp_path: Path) -> Run:
    return Run("infra", "staging", "abc123", repo, tmp_path / "artifacts")


def test_a_repo_with_secret_references_is_valid(repo: Path) -> None:
    loaded, issues = check_repo(repo)
    assert loaded is not None and issues == []


def test_terraform_gets_secret_variables_as_environment_never_in_its_variables_file(
        repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    context = contexts.infrastructure(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                          all_set))
    assert context.credentials["TF_VAR_db_password"] == DB_PASSWORD
    assert "db_password" not in context.spec.vars and DB_PASSWORD not in (context.spec.tfvars or "")
    assert '"cluster_name": "staging"' in (context.spec.tfvars or "")


def test_ansible_gets_the_stored_key_and_secret_extra_vars_as_credentials(
        repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    nodes = {"nodes": [{"name": "node-1", "address": "198.51.100.7"}]}
    context = contexts.configuration(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                      all_set), nodes)
    assert context is not None
    assert context.credentials["ssh_private_key"] == SSH_KEY
    assert context.credentials["extra_var:api_token"] == API_TOKEN
    assert context.spec.spec.extra_vars["api_token"] == {"secretRef": "api-token"}, "the plan keeps the reference"


def test_an_existing_cluster_needs_no_terraform_output(repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    context = contexts.workloads(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                  all_set), DesiredState("staging"), {})
    assert context is not None, "the workloads stage is not deferred waiting for an output"
    assert context.credentials["kubeconfig"] == KUBECONFIG


def test_a_secret_the_environment_cannot_see_is_an_error_naming_the_field_and_the_fix(
        repo: Path, tmp_path: Path, stored: StoredSecrets) -> None:
    put(stored, "staging-kubeconfig", KUBECONFIG, Scope("infra", "production"))
    targets = RealTargets(Settings(data_dir=tmp_path), stored)
    with pytest.raises(TargetsError) as caught:
        contexts.workloads(load_repo(repo), run(repo, tmp_path), targets, DesiredState("staging"), {})
    message = str(caught.value)
    assert "spec.cluster.kubeconfigFrom.secret" in message and "'staging-kubeconfig'" in message
    assert "tidegate secret set staging-kubeconfig --repo infra --env staging" in message


@pytest.mark.parametrize(("section", "value", "message"), [
    ("infrastructure.vars", "{secretRef: db-password, extra: 1}", "exactly `{secretRef: NAME}`"),
    ("infrastructure.vars", "{secretRef: 'bad name'}", "exactly `{secretRef: NAME}`"),
    ("variables", "{secretRef: db-password}", "cannot be stored secrets"),
], ids=["extra-key", "bad-name", "template-variable"])
def test_malformed_or_misplaced_references_are_refused_with_the_file_and_line(
        repo: Path, section: str, value: str, message: str) -> None:
    path = repo / "environments" / "staging.yaml"
    text = path.read_text()
    if section == "variables":
        text = text.replace("spec:\n", f"spec:\n  variables:\n    password: {value}\n", 1)
    else:
        text = text.replace("db_password: {secretRef: db-password}", f"db_password: {value}")
    path.write_text(text)
    loaded, issues = check_repo(repo)
    assert loaded is None or issues
    rendered = "\n".join(str(issue) for issue in issues)
    assert message in rendered and "environments/staging.yaml" in rendered, rendered


def encrypt_secret(repo: Path, recipient: str) -> None:
    """An encrypted Secret in the environment's workload, as `sops --encrypt` leaves it."""
    (repo / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: secret\\.yaml$\n"
                                     f"    encrypted_regex: ^(data|stringData)$\n    age: {recipient}\n")
    (repo / "apps/web/secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
                                               f"stringData: {{password: {DB_PASSWORD}}}\n")
    done = subprocess.run([str(find_sops()), "--encrypt", "--in-place", "apps/web/secret.yaml"], cwd=repo,
                          env={"HOME": "/nonexistent"}, capture_output=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr


def test_sops_encrypted_secrets_decrypt_with_the_age_identity_the_environment_names(
        repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    identity, recipient = generate_identity()
    encrypt_secret(repo, recipient)
    environment = repo / "environments/staging.yaml"
    environment.write_text(environment.read_text() + "  decryption: {provider: sops, secretRef: age-key}\n")
    put(all_set, "age-key", identity, Scope("infra"))

    context = contexts.workloads(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                  all_set),
                                 check_checkout(repo).environments["staging"], {})

    assert context is not None
    secret = next(item for item in context.spec.manifests["web"] if item.body["kind"] == "Secret")
    assert secret.body["stringData"] == {"password": DB_PASSWORD}


def test_encrypted_files_without_a_decryption_key_fail_the_stage_saying_what_to_set(
        repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    encrypt_secret(repo, generate_identity()[1])
    with pytest.raises(TargetsError, match=r"sets decryption\.secretRef"):
        contexts.workloads(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path), all_set),
                           check_checkout(repo).environments["staging"], {})


CONFIGURATION_ONLY = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: staging}
spec:
  configuration:
    playbook: ansible/site.yml
    inventoryFrom: {source}
    connection: {user: deploy, privateKeyRef: {secret: deploy-key}}
"""
NODES = "- {name: node-1, address: 198.51.100.7, groups: [web]}\n"


@pytest.mark.parametrize("source", ["{file: inventory/nodes.yaml}", "{secret: static-nodes}"], ids=["file", "secret"])
def test_a_configuration_only_environment_takes_its_nodes_from_a_file_or_a_secret(
        repo: Path, tmp_path: Path, all_set: StoredSecrets, source: str) -> None:
    (repo / "environments/staging.yaml").write_text(CONFIGURATION_ONLY.replace("{source}", source))
    (repo / "inventory").mkdir()
    (repo / "inventory/nodes.yaml").write_text(NODES)
    put(all_set, "static-nodes", NODES, Scope("infra"))
    loaded, issues = check_repo(repo)
    assert loaded is not None and not issues, issues

    context = contexts.configuration(loaded, run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path), all_set),
                                     {})

    assert context is not None, "not deferred: no Terraform output is awaited"
    assert context.spec.nodes == [{"name": "node-1", "address": "198.51.100.7", "groups": ["web"]}]


@pytest.mark.parametrize(("text", "message"), [("{name: node-1}", "must be a YAML list of nodes"),
                                               ("- [unclosed", "not YAML")], ids=["not-a-list", "not-yaml"])
def test_a_static_inventory_that_is_not_a_list_of_nodes_is_an_error_naming_the_file(
        repo: Path, tmp_path: Path, all_set: StoredSecrets, text: str, message: str) -> None:
    (repo / "environments/staging.yaml").write_text(CONFIGURATION_ONLY.replace("{source}", "{file: nodes.yaml}"))
    (repo / "nodes.yaml").write_text(text)
    with pytest.raises(TargetsError, match=f"nodes.yaml: {message}"):
        contexts.configuration(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                 all_set), {})


def test_inventory_from_names_exactly_one_source(repo: Path) -> None:
    (repo / "environments/staging.yaml").write_text(
        CONFIGURATION_ONLY.replace("{source}", "{file: nodes.yaml, secret: static-nodes}"))
    _, issues = check_repo(repo)
    assert any("set exactly one of `terraformOutput`, `file` or `secret`" in str(issue) for issue in issues), issues


def test_the_become_password_comes_from_a_stored_secret_as_a_secret_extra_var(
        repo: Path, tmp_path: Path, all_set: StoredSecrets) -> None:
    environment = repo / "environments/staging.yaml"
    environment.write_text(environment.read_text().replace(
        "      privateKeyRef: {secret: deploy-key}\n",
        "      privateKeyRef: {secret: deploy-key}\n      become: true\n      becomePasswordRef: {secret: sudo}\n"))
    put(all_set, "sudo", "become-pa55", Scope("infra", "staging"))
    nodes = {"nodes": [{"name": "node-1", "address": "198.51.100.7"}]}

    context = contexts.configuration(load_repo(repo), run(repo, tmp_path), RealTargets(Settings(data_dir=tmp_path),
                                                                                      all_set), nodes)

    assert context is not None
    assert context.credentials["extra_var:ansible_become_password"] == "become-pa55"
    plain, secret = extra_vars_of(context.spec.spec.extra_vars, context.credentials)
    assert secret == {"api_token": API_TOKEN, "ansible_become_password": "become-pa55"}
    assert "ansible_become_password" not in plain
