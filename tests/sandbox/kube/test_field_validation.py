"""`fieldValidation`: unknown fields are refused (Strict), reported (Warn, the default) or dropped (Ignore)."""

from __future__ import annotations

from typing import Any

import pytest

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def with_typo(m: Any) -> dict[str, Any]:
    body: dict[str, Any] = m.deployment()
    body["spec"]["replica"] = 3
    body["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    return body


def test_strict_refuses_unknown_fields_with_the_decoding_error(api: Any, m: Any) -> None:
    answer = api.post(f"{DEPLOYMENTS}?fieldValidation=Strict", with_typo(m))
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest"
    assert answer.json()["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagePolicy", unknown field "spec.replica"')
    assert api.get(f"{DEPLOYMENTS}/web").status_code == 404


@pytest.mark.parametrize(("mode", "warnings"), [
    (None, ['299 - "unknown field \\"spec.template.spec.containers[0].imagePolicy\\""',
            '299 - "unknown field \\"spec.replica\\""']),
    ("Warn", ['299 - "unknown field \\"spec.template.spec.containers[0].imagePolicy\\""',
              '299 - "unknown field \\"spec.replica\\""']),
    ("Ignore", []),
], ids=["default-warns", "warn", "ignore"])
def test_warn_and_ignore_drop_unknown_fields(api: Any, m: Any, mode: str | None, warnings: list[str]) -> None:
    path = DEPLOYMENTS if mode is None else f"{DEPLOYMENTS}?fieldValidation={mode}"
    answer = api.post(path, with_typo(m))
    assert answer.status_code == 201
    assert answer.raw.headers.getlist("Warning") == warnings
    stored = api.get(f"{DEPLOYMENTS}/web").json()
    assert "replica" not in stored["spec"] and stored["spec"]["replicas"] == 1
    assert "imagePolicy" not in stored["spec"]["template"]["spec"]["containers"][0]


def test_custom_resources_are_pruned_by_their_structural_schema(api: Any, m: Any) -> None:
    crd = m.crd()
    crd["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 1, "colour": "red"}}
    strict = api.post("/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Strict", widget)
    assert strict.status_code == 400 and 'unknown field "spec.colour"' in strict.json()["message"]
    created = api.post("/apis/example.com/v1/namespaces/default/widgets", widget).json()
    assert created["spec"] == {"size": 1}


def test_kubectl_apply_with_a_typo_fails_with_the_servers_message(kubectl: Any) -> None:
    manifest = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: typo, namespace: default}
data: {a: b}
dta: {c: d}
"""
    result = kubectl("apply", "-f", "-", stdin=manifest)
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "dta"' in result.stderr
    assert kubectl("apply", "--validate=false", "-f", "-", stdin=manifest).returncode == 0


def set_replicas(body: dict[str, Any]) -> None:
    body["spec"]["replicas"] = "two"


def set_image(body: dict[str, Any]) -> None:
    body["spec"]["template"]["spec"]["containers"][0]["image"] = 5


@pytest.mark.parametrize(("change", "message"), [
    (set_replicas, "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    (set_image, "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image "
                "of type string"),
], ids=["string-for-int", "number-for-string"])
def test_values_of_the_wrong_type_fail_decoding_like_the_go_decoder(api: Any, m: Any, change: Any,
                                                                     message: str) -> None:
    body = m.deployment()
    change(body)
    answer = api.post(DEPLOYMENTS, body)
    assert answer.status_code == 400
    assert answer.json()["message"] == f'Deployment in version "v1" cannot be handled as a Deployment: {message}'


def test_int_or_string_and_quantities_accept_both_forms(api: Any, m: Any) -> None:
    body = m.deployment()
    body["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}}
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": 1, "memory": "1Gi"}}
    assert api.post(DEPLOYMENTS, body).status_code == 201


def test_custom_resource_values_are_checked_against_the_crd_schema(api: Any, m: Any) -> None:
    crd = m.crd()
    crd["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    answer = api.post("/apis/example.com/v1/namespaces/default/widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "big"}})
    assert answer.status_code == 422
    assert answer.json()["message"] == ('Widget.example.com "w" is invalid: spec.size: Invalid value: "big": '
                                        'spec.size in body must be of type integer: "string"')
