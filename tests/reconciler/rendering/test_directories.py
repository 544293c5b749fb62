"""Plain directory workloads: YAML files in path order, each object at its file:line."""

from __future__ import annotations

import pytest

from reconciler.rendering import RenderLimits
from repo_schema.documents import Limits
from tests.reconciler.rendering.conftest import Repo


def test_a_plain_directory_renders_every_yaml_file_recursively_in_path_order(repo: Repo) -> None:
    repo.write("apps/web/b-service.yaml", repo.service())
    repo.write("apps/web/a/deployment.yml", repo.deployment())
    repo.write("apps/web/a/z.yaml", "---\n" + repo.service("extra") + "---\n")
    repo.write("apps/web/README.md", "not yaml")
    repo.write("apps/web/.hidden.yaml", "this: is ignored: entirely")
    repo.write("apps/web/.git/config.yaml", "ignored: true")

    workload = repo.render("apps/web")

    assert workload.issues == ()
    assert workload.renderer == "directory"
    assert [str(m.identity) for m in workload.manifests] == [
        "apps/Deployment//web", "/Service//extra", "/Service//web",
    ]
    assert [str(m.location) for m in workload.manifests] == [
        "apps/web/a/deployment.yml:1:1", "apps/web/a/z.yaml:2:1", "apps/web/b-service.yaml:1:1",
    ]
    assert str(workload.manifests[0].locate(("spec", "replicas"))) == "apps/web/a/deployment.yml:6:13"
    assert workload.digest.startswith("sha256:")


def test_the_digest_depends_on_content_not_on_where_it_was_written(repo: Repo) -> None:
    repo.write("one/all.yaml", repo.deployment() + "---\n" + repo.service())
    repo.write("two/1.yaml", repo.deployment())
    repo.write("two/2.yaml", "# a comment moves lines\n" + repo.service())
    repo.write("three/all.yaml", repo.deployment(replicas=3) + "---\n" + repo.service())

    one, two, three = repo.render("one"), repo.render("two"), repo.render("three")

    assert one.digest == two.digest
    assert one.digest != three.digest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "bad.yaml:1:1: <document>: a manifest must be a mapping, not a list"),
        ("just a string\n", "bad.yaml:1:1: <document>: a manifest must be a mapping, not a str scalar"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", 'bad.yaml:1:1: apiVersion: missing required field "apiVersion"'),
        ("apiVersion: v1\nkind: 3\nmetadata: {name: x}\n", "bad.yaml:2:7: kind: kind must be a non-empty string"),
        ("apiVersion: v1\nkind: ConfigMap\n", 'bad.yaml:1:1: metadata: missing required field "metadata"'),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n",
         'bad.yaml:4:3: metadata.name: missing required field "name"'),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  1: one\n",
         "bad.yaml:5:3: data[1]: key 1 must be a string (quote it)"),
        ("apiVersion: v1\nkind: List\nmetadata: {name: x}\nitems: []\n",
         "bad.yaml:2:7: kind: List objects are not supported; write one document per object"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, name: y}\n",
         "bad.yaml:3:21: metadata.name: duplicate key 'name' (first defined at line 3)"),
    ],
    ids=["list", "scalar", "no-apiVersion", "kind-not-string", "no-metadata", "no-name", "int-key",
         "list-kind", "duplicate-key"],
)
def test_documents_that_cannot_be_objects_are_issues_at_their_line(repo: Repo, text: str, expected: str) -> None:
    repo.write("apps/bad/bad.yaml", text)
    repo.write("apps/bad/good.yaml", repo.service())

    workload = repo.render("apps/bad")

    assert [str(issue).removeprefix("apps/bad/") for issue in workload.issues] == [expected]
    assert [m.identity.name for m in workload.manifests] == (["x"] if "duplicate" in expected else []) + ["web"]


def test_the_same_object_twice_in_one_workload_is_an_issue(repo: Repo) -> None:
    repo.write("apps/web/a.yaml", repo.service())
    repo.write("apps/web/b.yaml", repo.service())

    assert repo.issues("apps/web") == [
        "apps/web/b.yaml:1:1: metadata.name: duplicate object /Service//web (also defined at apps/web/a.yaml:1:1)"
    ]


def test_an_oversize_file_is_refused_without_being_read(repo: Repo) -> None:
    repo.write("apps/web/big.yaml", "# padding\n" * 200)
    repo.write("apps/web/ok.yaml", repo.service())
    limits = RenderLimits(file=Limits(max_bytes=1000))

    workload = repo.render("apps/web", limits=limits)

    assert [str(i) for i in workload.issues] == [
        "apps/web/big.yaml:1:1: <file>: file is 2000 bytes; the limit is 1000"
    ]
    assert [m.identity.name for m in workload.manifests] == ["web"]


def test_too_many_documents_in_one_workload_is_an_issue(repo: Repo) -> None:
    for index in range(4):
        repo.write(f"apps/many/{index}.yaml", "".join(
            f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{index}-{n}}}\n" for n in range(3)
        ))

    workload = repo.render("apps/many", limits=RenderLimits(max_manifests=5))

    assert [str(i) for i in workload.issues] == [
        "apps/many:1:1: <workload>: more than 5 manifests in one workload"
    ]
    assert len(workload.manifests) == 5


def test_too_many_documents_in_one_file_is_an_issue(repo: Repo) -> None:
    repo.write("apps/many/all.yaml", "---\n{}\n" * 20)

    workload = repo.render("apps/many", limits=RenderLimits(file=Limits(max_documents=10)))

    assert "apps/many/all.yaml:1:1: <file>: more than 10 YAML documents in one file" in [
        str(i) for i in workload.issues
    ]


def test_a_kustomization_nested_in_a_plain_directory_is_not_silently_applied(repo: Repo) -> None:
    repo.write("apps/mixed/svc.yaml", repo.service())
    repo.write("apps/mixed/sub/kustomization.yaml", "resources: []\n")

    assert repo.issues("apps/mixed") == [
        "apps/mixed/sub/kustomization.yaml:1:1: <file>: a kustomization inside a plain directory is not "
        "rendered; point a workload at its directory instead"
    ]


def test_a_file_that_is_not_utf8_is_an_issue(repo: Repo) -> None:
    (repo.root / "apps" / "bin").mkdir(parents=True)
    (repo.root / "apps" / "bin" / "x.yaml").write_bytes(b"name: \xff\xfe\n")

    assert repo.issues("apps/bin") == ["apps/bin/x.yaml:1:1: <file>: not UTF-8 text (byte 6)"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [("apps/missing", "apps/missing:1:1: path: workload path is not a directory"),
     ("apps/web/svc.yaml", "apps/web/svc.yaml:1:1: path: workload path is not a directory")],
    ids=["missing", "a-file"],
)
def test_a_workload_path_must_be_a_directory(repo: Repo, path: str, expected: str) -> None:
    repo.write("apps/web/svc.yaml", repo.service())

    assert repo.issues(path) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: " + "[" * 100_000 + "]" * 100_000 + "}\n",
         "apps/deep/x.yaml:4:109: <yaml>: YAML nested deeper than 100 levels"),
        ("a:\n" + "".join("  " * depth + "- \n" for depth in range(150)),
         "apps/deep/x.yaml:102:201: <yaml>: YAML nested deeper than 100 levels"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nx0: &a0 [1]\n"
         + "".join(f"x{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 150)),
         "apps/deep/x.yaml:1:1: <document>: object nested deeper than 100 levels"),
    ],
    ids=["flow-bomb", "block", "alias-chain"],
)
def test_deep_nesting_is_an_issue_before_any_recursive_reader_sees_it(repo: Repo, text: str, expected: str) -> None:
    repo.write("apps/deep/x.yaml", text)

    assert repo.issues("apps/deep") == [expected]
