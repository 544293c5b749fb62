"""One normalised comparison: no phantom drift right after an apply, real drift when someone edits."""

from __future__ import annotations

import copy
from typing import Any

from providers.kubernetes.client import KubeClient
from providers.kubernetes.diff import IgnoreRule, compare, normalise
from providers.kubernetes.labels import with_tracking_labels
from providers.stage import MASK, Action

DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
}
SECRET: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                          "stringData": {"password": "hunter2"}}


def test_missing_object_is_a_create_and_applied_object_is_a_no_op(client: KubeClient) -> None:
    assert compare(client, DEPLOY).action is Action.create
    client.apply(DEPLOY)
    again = compare(client, DEPLOY)
    assert again.action is Action.no_op, again.fields
    assert again.diff == ""


def test_out_of_band_scale_is_an_update_with_a_readable_diff(client: KubeClient) -> None:
    client.apply(DEPLOY)
    client.resource("apps/v1", "Deployment").patch(
        name="web", namespace="default", body={"spec": {"replicas": 5}},
        content_type="application/merge-patch+json")
    result = compare(client, DEPLOY)
    # replicas is not in the manifest, so the dry-run keeps the live 5: not drift of our fields
    assert result.action is Action.no_op
    changed = copy.deepcopy(DEPLOY)
    changed["spec"]["replicas"] = 2
    result = compare(client, changed)
    assert result.action is Action.update and result.fields == ["/spec/replicas"]
    assert ".spec.replicas" in result.conflict  # another manager owns it: applying needs force
    assert "-  replicas: 5" in result.diff and "+  replicas: 2" in result.diff


def test_secret_string_data_folds_into_data_and_values_are_masked(client: KubeClient) -> None:
    client.apply(SECRET)
    assert compare(client, SECRET).action is Action.no_op
    changed = copy.deepcopy(SECRET)
    changed["stringData"]["password"] = "correct horse"
    result = compare(client, changed)
    assert result.action is Action.update
    assert "hunter2" not in result.diff and "correct horse" not in result.diff and MASK in result.diff


def test_ignore_rules_drop_fields_on_both_sides(client: KubeClient) -> None:
    cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "c", "namespace": "default", "annotations": {"reviewed": "monday"}}, "data": {"k": "v"}}
    client.apply(cm)
    edited = copy.deepcopy(cm)
    edited["metadata"]["annotations"]["reviewed"] = "tuesday"
    assert compare(client, edited).action is Action.update
    rule = IgnoreRule.parse({"kind": "ConfigMap", "name": "c", "jsonPointers": ["/metadata/annotations/reviewed"]})
    assert compare(client, edited, [rule]).action is Action.no_op
    other = IgnoreRule.parse({"kind": "ConfigMap", "name": "other", "jsonPointers": ["/metadata/annotations/reviewed"]})
    assert compare(client, edited, [other]).action is Action.update


def test_tracking_labels_are_never_a_diff_line_but_a_live_object_lacking_them_is_relabelled(
        client: KubeClient) -> None:
    client.apply(DEPLOY)  # applied before labelling (or adopted): no tracking labels live
    labelled = with_tracking_labels(DEPLOY, "staging", "web")
    result = compare(client, labelled)
    assert result.action is Action.update and result.fields == []  # nothing the user wrote differs
    assert result.relabel == ["app.kubernetes.io/managed-by", "tidegate.dev/environment", "tidegate.dev/workload"]
    assert result.diff.startswith("# adds Tidegate's tracking labels: app.kubernetes.io/managed-by")
    assert "tidegate.dev/workload" not in result.diff.partition("\n")[2]
    client.apply(labelled)
    assert compare(client, labelled).action is Action.no_op
    # the normalised form drops them on both sides; the user's own labels stay
    custom = with_tracking_labels({**DEPLOY, "metadata": {**DEPLOY["metadata"], "labels": {"team": "a"}}}, "s", "w")
    assert (normalise(custom) or {})["metadata"]["labels"] == {"team": "a"}
