"""Strict offline validation against the Kubernetes 1.37 schemas, every error at its exact line."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable

import kubernetes_validate
import pytest

from providers.kubernetes.schema import PlainManifest, builtin_validator, validate_manifests
from repo_schema.issues import Issue, Location
from tests.providers.kubernetes.conftest import Load

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: databases.platform.example.com
spec:
  group: platform.example.com
  scope: Namespaced
  names: {kind: Database, plural: databases, singular: database}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [engine]
              properties:
                engine: {type: string, enum: [postgres, mysql]}
                storage: {x-kubernetes-int-or-string: true}
                size: {type: integer, minimum: 1, exclusiveMinimum: true}
                note: {type: string, nullable: true}
                extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
    - name: v0
      served: false
      storage: false
"""


def printed(issues: Iterable[Issue]) -> list[str]:
    return [str(issue) for issue in issues]


def test_a_valid_deployment_has_no_issues(load: Load) -> None:
    assert validate_manifests(load(DEPLOYMENT.format(replicas=2))) == []


def test_a_string_where_an_integer_belongs_is_reported_at_the_value(load: Load) -> None:
    issues = validate_manifests(load(DEPLOYMENT.format(replicas='"three"')))

    assert printed(issues) == [
        'apps/web/manifests.yaml:6:13: spec.replicas: expected integer, got string "three"'
    ]


def test_an_unknown_field_is_reported_at_its_key(load: Load) -> None:
    text = DEPLOYMENT.format(replicas=2).replace("  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n")

    assert printed(validate_manifests(load(text))) == [
        'apps/web/manifests.yaml:7:3: spec.replicaz: unknown field "replicaz"'
    ]


def test_every_error_of_every_manifest_is_reported(load: Load) -> None:
    text = DEPLOYMENT.format(replicas="[1]").replace("    metadata:\n", "    metadata:\n      labelz: {}\n")
    text = text.replace("          image: nginx:1.27\n", "          image: 7\n          ports: [{containerPort: x}]\n")
    text += "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, colour: blue}\nspec:\n  ports: [{port: 1.5}]\n"

    issues = validate_manifests(load(text))

    assert printed(issues) == [
        "apps/web/manifests.yaml:6:13: spec.replicas: expected integer, got an array",
        'apps/web/manifests.yaml:11:7: spec.template.metadata.labelz: unknown field "labelz"',
        "apps/web/manifests.yaml:16:18: spec.template.spec.containers[0].image: expected string, got integer 7",
        "apps/web/manifests.yaml:17:35: spec.template.spec.containers[0].ports[0].containerPort: expected "
        'integer, got string "x"',
        'apps/web/manifests.yaml:21:23: metadata.colour: unknown field "colour"',
        "apps/web/manifests.yaml:23:18: spec.ports[0].port: expected integer, got number 1.5",
    ]


def test_missing_required_fields_are_reported_at_their_parent(load: Load) -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n"

    assert printed(validate_manifests(load(text))) == [
        'apps/web/manifests.yaml:5:3: spec.selector: missing required field "selector"',
        'apps/web/manifests.yaml:5:3: spec.template: missing required field "template"',
    ]


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("  ports: [{port: 80, targetPort: http}]", []),
        ("  ports: [{port: 80, targetPort: 8080}]", []),
        ("  ports: [{port: 80, targetPort: 1.5}]",
         ["apps/web/manifests.yaml:5:34: spec.ports[0].targetPort: expected string or integer, got number 1.5"]),
        ("  type: Bogus", []),  # an enum the API server checks, not the published schema
        ("  clusterIP: null", []),
        ("  ports: [{port: 80, targetPort: null}]", []),
        ("  sessionAffinity: 3", ["apps/web/manifests.yaml:5:20: spec.sessionAffinity: expected string, got "
                                  "integer 3"]),
    ],
    ids=["int-or-string-name", "int-or-string-number", "int-or-string-float", "free-enum", "null-is-unset",
         "null-int-or-string", "plain-type"],
)
def test_service_fields_follow_the_api_server_rules(load: Load, fragment: str, expected: list[str]) -> None:
    text = f"apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n{fragment}\n"

    assert printed(validate_manifests(load(text))) == expected


def test_a_custom_resource_is_accepted_when_its_crd_is_in_the_set(load: Load) -> None:
    cr = """\
    ---
    apiVersion: platform.example.com/v1
    kind: Database
    metadata: {name: orders, labels: {team: a}}
    spec:
      engine: postgres
      storage: 10Gi
      size: 2
      note: null
      extra: {anything: [goes, here]}
    """

    assert validate_manifests(load(CRD + textwrap.dedent(cr))) == []


def test_a_custom_resource_is_checked_against_its_crd_schema(load: Load) -> None:
    cr = """\
    ---
    apiVersion: platform.example.com/v1
    kind: Database
    metadata: {name: orders, labelz: {}}
    spec:
      engine: oracle
      storage: 1.5
      size: 1
      sise: 3
    status: {}
    """

    assert printed(validate_manifests(load(CRD + textwrap.dedent(cr)))) == [
        'apps/web/manifests.yaml:32:26: metadata.labelz: unknown field "labelz"',
        'apps/web/manifests.yaml:34:11: spec.engine: must be one of "postgres", "mysql"; got string "oracle"',
        "apps/web/manifests.yaml:35:12: spec.storage: expected integer or string, got number 1.5",
        "apps/web/manifests.yaml:36:9: spec.size: 1 is less than or equal to the minimum of 1",
        'apps/web/manifests.yaml:37:3: spec.sise: unknown field "sise"',
        'apps/web/manifests.yaml:38:1: status: unknown field "status"',
    ]


def test_crds_from_elsewhere_can_be_supplied(load: Load) -> None:
    [crd] = load(CRD)
    cr = load("apiVersion: platform.example.com/v1\nkind: Database\nmetadata: {name: x}\nspec: {engine: mysql}\n")

    assert validate_manifests(cr, crds=[crd.body]) == []


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("widgets.example.com/v1", "Widget",
         "kind: unknown kind Widget in widgets.example.com/v1 (no schema for Kubernetes 1.37 and no "
         "CustomResourceDefinition in this set)"),
        ("apps.example.com/v1", "Deployment",
         "kind: unknown kind Deployment in apps.example.com/v1 (no schema for Kubernetes 1.37 and no "
         "CustomResourceDefinition in this set)"),
        ("v1", "../../../_definitions", "kind: unknown kind ../../../_definitions in v1 (no schema for "
                                         "Kubernetes 1.37 and no CustomResourceDefinition in this set)"),
        ("platform.example.com/v0", "Database",
         "apiVersion: version v0 of Database is not served by CustomResourceDefinition "
         "databases.platform.example.com"),
        ("platform.example.com/v9", "Database",
         "apiVersion: version v9 of Database is not served by CustomResourceDefinition "
         "databases.platform.example.com"),
    ],
    ids=["no-crd", "lookalike-group", "path-in-kind", "not-served", "unknown-version"],
)
def test_kinds_without_a_schema_or_crd_are_rejected(load: Load, api_version: str, kind: str, expected: str) -> None:
    [crd] = load(CRD, "apps/platform/crd.yaml")
    [manifest] = load(f"apiVersion: {api_version}\nkind: {kind!r}\nmetadata: {{name: x}}\n", "apps/x/x.yaml")

    issues = validate_manifests([crd, manifest])

    assert [f"{issue.field}: {issue.message}" for issue in issues] == [expected]
    assert issues[0].location.file == "apps/x/x.yaml" and issues[0].location.line in (1, 2)


def test_a_crd_with_a_broken_schema_is_reported_not_raised(load: Load) -> None:
    broken = CRD.replace("engine: {type: string, enum: [postgres, mysql]}", "engine: {type: strang}")
    cr = "---\napiVersion: platform.example.com/v1\nkind: Database\nmetadata: {name: x}\nspec: {engine: a}\n"

    [issue] = validate_manifests(load(broken + cr))

    assert "the schema of CustomResourceDefinition databases.platform.example.com (v1) is invalid" in issue.message


def test_manifests_without_a_document_are_reported_at_their_location() -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}

    issues = validate_manifests([PlainManifest(body, Location("apps/k/kustomization.yaml"))])

    assert printed(issues) == ["apps/k/kustomization.yaml:1:1: data.a: expected string, got integer 1"]


def test_validators_are_built_once_and_beat_the_naive_library_call(load: Load) -> None:
    manifests = load("\n---\n".join(DEPLOYMENT.format(replicas=n) for n in range(50)))
    validate_manifests(manifests[:1])  # warm the registry
    before = builtin_validator.cache_info()

    started = time.perf_counter()
    validate_manifests(manifests)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    for manifest in manifests[:5]:
        kubernetes_validate.validate(dict(manifest.body), "1.37", strict=True)
    naive = (time.perf_counter() - started) / 5 * len(manifests)

    assert builtin_validator.cache_info().misses == before.misses
    assert ours < naive


def test_an_object_nested_too_deeply_is_an_issue_not_a_crash() -> None:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"p": schema}}
    deep = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "as.x.io"},
            "spec": {"group": "x.io", "scope": "Namespaced", "names": {"kind": "A", "plural": "as"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}

    issues = validate_manifests([PlainManifest(deep, Location("crd.yaml"))])

    assert printed(issues) == ["crd.yaml:1:1: <document>: object nested too deeply to validate"]
