"""Which environments of the example repo a change touches (on a private copy of the repo)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from reconciler.sources.paths import affected, affected_between, paths_read, reads_changed
from repo_schema.loader import LoadedRepo, load_repo

BOTH = {"staging", "production"}


def write(root: Path, relative: str, text: str) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(text))


@pytest.fixture
def repo(repo_copy: Path) -> LoadedRepo:
    return load_repo(repo_copy)


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ("apps/web/overlays/production/deployment-patch.yaml", {"production"}),
        ("apps/worker/overlays/staging/kustomization.yaml", {"staging"}),
        ("apps/web/base/deployment.yaml", BOTH),
        ("apps/web/base/new-resource.yaml", BOTH),
        ("tidegate.yaml", BOTH),
        ("environments/staging.yaml", {"staging"}),
        ("infrastructure/terraform/cluster/nodes.tf", BOTH),
        ("infrastructure/ansible/roles/common/tasks/main.yml", BOTH),
        ("apps/settings/settings.yaml.j2", BOTH),
        ("apps/README.md", set()),
        ("infrastructure/README.md", set()),
        ("README.md", set()),
        ("apps/web/overlays/production-canary/kustomization.yaml", set()),
        ("environments/staging.yaml.bak", set()),
    ],
    ids=[
        "production-overlay", "staging-overlay", "shared-base", "file-added-to-base", "repository-config",
        "environment-document", "terraform-module", "ansible-role", "template-workload", "apps-readme",
        "infrastructure-readme", "root-readme", "sibling-with-common-prefix", "similar-file-name",
    ],
)
def test_a_change_affects_exactly_the_environments_that_read_it(
    repo: LoadedRepo, changed: str, expected: set[str]
) -> None:
    assert affected(repo, [changed]) == expected


def test_affected_unions_over_several_changed_paths(repo: LoadedRepo) -> None:
    changed = ["README.md", "apps/web/overlays/staging/configmap-patch.yaml", "environments/production.yaml"]

    assert affected(repo, changed) == BOTH
    assert affected(repo, []) == set()


def test_production_reads_its_overlays_their_bases_and_its_own_document(repo: LoadedRepo) -> None:
    assert paths_read(repo, "production") == {
        "tidegate.yaml",
        "environments/production.yaml",
        "infrastructure/terraform/cluster",
        "infrastructure/ansible",
        "apps/platform",
        "apps/settings",
        "apps/web/overlays/production",
        "apps/web/base",
        "apps/worker/overlays/production",
        "apps/worker/base",
    }


def test_reads_changed_answers_for_one_environment(repo: LoadedRepo) -> None:
    assert reads_changed(repo, "staging", ["apps/web/overlays/staging/configmap-patch.yaml"])
    assert not reads_changed(repo, "production", ["apps/web/overlays/staging/configmap-patch.yaml"])


def test_local_terraform_modules_are_followed_recursively(repo_copy: Path) -> None:
    with (repo_copy / "infrastructure/terraform/cluster/main.tf").open("a") as main:
        main.write(textwrap.dedent("""
            module "network" {
              source = "../modules/network"
            }
            module "registry" {
              source = "terraform-aws-modules/vpc/aws"
            }
            module "escape" {
              source = "../../../../outside"
            }
        """))
    write(repo_copy, "infrastructure/terraform/modules/network/main.tf", """
        module "tags" {
          source   = "./../shared-tags"
        }
    """)
    write(repo_copy, "infrastructure/terraform/modules/shared-tags/main.tf", """
        module "back" {
          source = "../network"
        }
    """)
    repo = load_repo(repo_copy)

    reads = paths_read(repo, "staging")

    assert {"infrastructure/terraform/modules/network", "infrastructure/terraform/modules/shared-tags"} <= reads
    assert affected(repo, ["infrastructure/terraform/modules/shared-tags/variables.tf"]) == BOTH
    assert affected(repo, ["infrastructure/terraform/modules/unused/main.tf"]) == set()
    assert not any("outside" in entry for entry in reads)


def test_kustomize_references_outside_the_overlay_are_read_by_that_overlay_only(repo_copy: Path) -> None:
    with (repo_copy / "apps/web/overlays/staging/kustomization.yaml").open("a") as kustomization:
        kustomization.write(textwrap.dedent("""
            components:
              - ../../components/tracing
            patchesStrategicMerge:
              - ../../patches/strategic.yaml
            patchesJson6902:
              - target: {group: apps, version: v1, kind: Deployment, name: web}
                path: ../../patches/json6902.yaml
            configMapGenerator:
              - name: app-settings
                files:
                  - app.properties=../../shared/app.properties
            secretGenerator:
              - name: app-secrets
                envs:
                  - ../../shared/secrets.env
        """))
    write(repo_copy, "apps/web/components/tracing/kustomization.yaml", """
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        patches:
          - path: ../../patches/tracing.yaml
    """)
    for name in ("patches/strategic.yaml", "patches/json6902.yaml", "patches/tracing.yaml",
                 "shared/app.properties", "shared/secrets.env"):
        write(repo_copy, f"apps/web/{name}", "x: 1\n")
    repo = load_repo(repo_copy)

    for changed in ("apps/web/components/tracing/kustomization.yaml", "apps/web/patches/strategic.yaml",
                    "apps/web/patches/json6902.yaml", "apps/web/patches/tracing.yaml",
                    "apps/web/shared/app.properties", "apps/web/shared/secrets.env"):
        assert affected(repo, [changed]) == {"staging"}, changed
    assert affected(repo, ["apps/web/shared/unreferenced.txt"]) == set()



def test_a_path_only_the_old_revision_read_still_concerns_its_environment(repo: LoadedRepo, tmp_path: Path) -> None:
    """Polls and previews share one rule: staging drops its worker workload and the commit deletes
    the worker's staging overlay; the new revision no longer reads those files, the old one did."""
    new = tmp_path / "new"
    shutil.copytree(repo.root, new)
    document = new / "environments" / "staging.yaml"
    lines = document.read_text().splitlines()
    document.write_text("\n".join(line for line in lines if "apps/worker" not in line) + "\n")
    changed = ["apps/worker/overlays/staging/deployment-patch.yaml"]

    assert affected(load_repo(new), changed) == set()
    assert affected_between(repo, load_repo(new), changed) == {"staging"}
    assert affected_between(None, load_repo(new), None) == BOTH
