"""SOPS-encrypted Secrets and Terraform variable files: rendered, validated and cached encrypted;
decrypted only when a stage needs them — also after Kustomize changed the object — and refused,
naming the file, when tampered with or the key is wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from reconciler.desired import check_checkout
from reconciler.rendering.age import generate_identity
from reconciler.rendering.encrypted import decrypt_manifests, encrypted_variables, is_encrypted
from reconciler.rendering.manifest import Manifest
from reconciler.rendering.sops import SopsError
from tests.reconciler.rendering.conftest import SopsRepo

pytestmark = pytest.mark.integration  # runs the real sops binary

PASSWORD = "encrypted-db-pa55word"
SECRET = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: database
type: Opaque
stringData:
  password: {PASSWORD}
"""
KUSTOMIZATION = """\
namespace: web
labels:
  - pairs: {team: platform}
resources: [secret.yaml]
"""


def manifests_of(sops_repo: SopsRepo, path: str) -> dict[str, list[Manifest]]:
    rendered = sops_repo.repo.render(path)
    assert not rendered.issues, rendered.issues
    return {"web": list(rendered.manifests)}


def secret_of(manifests: Mapping[str, Sequence[Manifest]]) -> Manifest:
    return next(item for item in manifests["web"] if item.body["kind"] == "Secret")


@pytest.mark.parametrize("layout", ["plain-directory", "kustomize-namespace-and-labels"])
def test_an_encrypted_secret_renders_encrypted_and_decrypts_for_the_stage(sops_repo: SopsRepo, layout: str) -> None:
    sops_repo.encrypt("apps/web/secret.yaml", SECRET)
    if layout != "plain-directory":
        sops_repo.repo.write("apps/web/kustomization.yaml", KUSTOMIZATION)

    rendered = manifests_of(sops_repo, "apps/web")
    assert is_encrypted(secret_of(rendered).body)
    assert PASSWORD not in json.dumps(secret_of(rendered).body)

    decrypted = secret_of(decrypt_manifests(rendered, sops_repo.root, lambda: sops_repo.keys.identity))
    assert decrypted.body["stringData"] == {"password": PASSWORD}
    assert "sops" not in decrypted.body
    if layout != "plain-directory":
        assert decrypted.body["metadata"]["namespace"] == "web"
        assert decrypted.body["metadata"]["labels"] == {"team": "platform"}


def test_workloads_without_encrypted_objects_never_ask_for_the_key(sops_repo: SopsRepo) -> None:
    sops_repo.repo.write("apps/web/deployment.yaml", sops_repo.repo.deployment())

    def no_key() -> str:
        raise AssertionError("the identity was read although nothing is encrypted")

    assert decrypt_manifests(manifests_of(sops_repo, "apps/web"), sops_repo.root, no_key)


@pytest.mark.parametrize("kustomized", [False, True], ids=["plain", "kustomize"])
def test_a_tampered_file_is_refused_with_its_path_and_the_mac_mismatch(sops_repo: SopsRepo, kustomized: bool) -> None:
    path = sops_repo.encrypt("apps/web/secret.yaml", SECRET)
    path.write_text(path.read_text().replace("name: database", "name: payments"))
    if kustomized:
        sops_repo.repo.write("apps/web/kustomization.yaml", KUSTOMIZATION)

    with pytest.raises(SopsError) as caught:
        decrypt_manifests(manifests_of(sops_repo, "apps/web"), sops_repo.root, lambda: sops_repo.keys.identity)
    assert str(caught.value).startswith("apps/web/secret.yaml: cannot decrypt with SOPS: MAC mismatch")


def test_the_wrong_key_is_refused_with_the_path_and_sops_reason(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/secret.yaml", SECRET)
    other, _ = generate_identity()
    with pytest.raises(SopsError) as caught:
        decrypt_manifests(manifests_of(sops_repo, "apps/web"), sops_repo.root, lambda: other)
    assert caught.value.path == "apps/web/secret.yaml"
    assert "no identity matched" in caught.value.reason and other not in str(caught.value)


def test_encrypted_terraform_variables_become_environment_values(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("terraform/secrets.sops.tfvars.json",
                      json.dumps({"db_password": PASSWORD, "replicas": 3, "tags": {"team": "infra"}}))
    sops_repo.repo.write("terraform/plain.tfvars.json", '{"region": "eu-west-1"}')

    found = encrypted_variables(sops_repo.root, "terraform", lambda: sops_repo.keys.identity)

    assert found == {"TF_VAR_db_password": PASSWORD, "TF_VAR_replicas": "3", "TF_VAR_tags": '{"team": "infra"}'}


@pytest.mark.parametrize("name", ["terraform.tfvars.json", "secrets.auto.tfvars.json"])
def test_an_encrypted_file_terraform_would_load_by_itself_is_refused(sops_repo: SopsRepo, name: str) -> None:
    sops_repo.encrypt(f"terraform/{name}", json.dumps({"db_password": PASSWORD}))
    with pytest.raises(SopsError, match=f"terraform/{name}: .*Terraform loads this file by itself"):
        encrypted_variables(sops_repo.root, "terraform", lambda: sops_repo.keys.identity)


def test_a_rendered_object_changed_since_encryption_with_no_sops_source_is_refused(
        sops_repo: SopsRepo, tmp_path: Path) -> None:
    sops_repo.encrypt("apps/web/secret.yaml", SECRET)
    sops_repo.repo.write("apps/web/kustomization.yaml", KUSTOMIZATION)
    rendered = manifests_of(sops_repo, "apps/web")
    (sops_repo.root / "apps/web/secret.yaml").write_text(SECRET.replace(PASSWORD, "swapped-in-plain-text"))

    with pytest.raises(SopsError, match="not a SOPS file whose MAC could vouch for it"):
        decrypt_manifests(rendered, sops_repo.root, lambda: sops_repo.keys.identity)


def test_only_secrets_are_decrypted_so_no_value_lands_in_a_diff_that_is_not_masked(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/secret.yaml", SECRET.replace("kind: Secret", "kind: ConfigMap")
                      .replace("stringData:", "data:").replace("type: Opaque\n", ""))
    with pytest.raises(SopsError, match="only v1 Secrets may be SOPS-encrypted, not 'ConfigMap'"):
        decrypt_manifests(manifests_of(sops_repo, "apps/web"), sops_repo.root, lambda: sops_repo.keys.identity)


ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec:
  workloads: [{name: web, path: apps/web}]
"""


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "committed-in-plain-text"])
def test_a_file_the_sops_rules_cover_must_be_encrypted(sops_repo: SopsRepo, encrypted: bool) -> None:
    sops_repo.repo.write(".sops.yaml", f"""\
        creation_rules:
          - path_regex: secret\\.yaml$
            encrypted_regex: ^(data|stringData)$
            age: {sops_repo.keys.recipient}
        """)
    sops_repo.repo.write("environments/dev.yaml", ENVIRONMENT)
    if encrypted:
        sops_repo.encrypt("apps/web/secret.yaml", SECRET)
    else:
        sops_repo.repo.write("apps/web/secret.yaml", SECRET)

    issues = [str(issue) for issue in check_checkout(sops_repo.root).issues]

    assert issues == ([] if encrypted else [
        "apps/web/secret.yaml:1:1: <file>: .sops.yaml says files matching 'secret\\\\.yaml$' are SOPS-encrypted, but "
        "this one is not: encrypt it (sops --encrypt --in-place apps/web/secret.yaml) before committing"])
