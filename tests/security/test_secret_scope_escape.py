"""A config repo cannot read another repository's (or another environment's) stored secrets.

Stored secrets are named in the repo (`kubeconfigFrom.secret`, `privateKeyRef.secret`,
`{secretRef: NAME}`), and whoever can commit to a registered repo chooses the names. The attack:
a second repository, registered for a different team, names the production kubeconfig and SSH key
that were stored for `infra` — to get them into its own stages (its cluster, its Terraform
variables, its PR previews). The stage must fail naming the field, and never hold the value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import contexts, secrets
from reconciler.contexts import Run
from reconciler.desired import DesiredState
from reconciler.secrets import Scope, StoredSecrets
from reconciler.targets import TargetsError
from repo_schema.loader import load_repo
from store import Database, SecretBox
from tidegate.settings import Settings
from tidegate.targets import RealTargets

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: production-cluster-token}}]\n"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nproduction-deploy-key\n-----END OPENSSH PRIVATE KEY-----\n"
ATTACKER_ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: production}
spec:
  infrastructure:
    path: terraform
    vars: {stolen: {secretRef: prod-kubeconfig}}
  configuration:
    playbook: site.yml
    inventoryFrom: {file: nodes.yaml}
    connection: {privateKeyRef: {secret: deploy-key}}
  cluster: {kubeconfigFrom: {secret: prod-kubeconfig}}
  workloads: [{name: app, path: app}]
"""


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[StoredSecrets]:
    """The `infra` team's secrets: the production kubeconfig and the deploy key of its repository."""
    database = Database.embedded(tmp_path / "data")
    database.upgrade()
    store = StoredSecrets(database, SecretBox(SecretBox.generate_key()))
    with database.session(write=True) as session:
        secrets.set_secret(session, store.box, "prod-kubeconfig", Scope("infra", "production"), KUBECONFIG, "admin")
        secrets.set_secret(session, store.box, "deploy-key", Scope("infra"), SSH_KEY, "admin")
    yield store
    database.dispose()


@pytest.fixture
def attacker(tmp_path: Path) -> Path:
    """Another team's repository, with an environment of the same name naming infra's secrets."""
    root = tmp_path / "payments"
    files = {"environments/production.yaml": ATTACKER_ENVIRONMENT, "terraform/main.tf": 'variable "stolen" {}\n',
             "site.yml": "- hosts: all\n  tasks: []\n", "nodes.yaml": "- {name: n1, address: 198.51.100.9}\n",
             "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


@pytest.mark.parametrize(("stage", "field"), [
    ("workloads", "spec.cluster.kubeconfigFrom.secret"),
    ("infrastructure", "spec.infrastructure.vars.stolen.secretRef"),
    ("configuration", "connection.privateKeyRef.secret"),
], ids=["kubeconfig", "terraform-variable", "ssh-key"])
def test_another_repository_naming_infras_secrets_gets_an_error_not_the_value(
        attacker: Path, stored: StoredSecrets, tmp_path: Path, stage: str, field: str) -> None:
    repo = load_repo(attacker)
    run = Run("payments", "production", "0" * 40, attacker, tmp_path / "artifacts")
    targets = RealTargets(Settings(data_dir=tmp_path), stored)
    with pytest.raises(TargetsError) as caught:
        if stage == "workloads":
            contexts.workloads(repo, run, targets, DesiredState("production"), {})
        elif stage == "infrastructure":
            contexts.infrastructure(repo, run, targets)
        else:
            contexts.configuration(repo, run, targets, {})
    message = str(caught.value)
    assert field in message and "payments/production cannot see" in message
    assert "production-cluster-token" not in message and "production-deploy-key" not in message


def test_the_owning_repository_still_resolves_them(stored: StoredSecrets) -> None:
    assert stored.resolve("infra", "production", "prod-kubeconfig") == KUBECONFIG
    assert stored.resolve("infra", "staging", "deploy-key") == SSH_KEY
    assert stored.resolve("infra", "staging", "prod-kubeconfig") is None, "another environment of infra"
