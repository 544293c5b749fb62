"""Reading `terraform show -json`: actions, masking, unknown values, drift noise."""

from __future__ import annotations

from typing import Any

import pytest

from providers.stage import MASK, Action
from providers.terraform.plans import (
    UNKNOWN,
    StateVersion,
    action_of,
    drift_items,
    flatten,
    masked,
    parse_plan,
    same,
)


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param(["create"], Action.create, id="create"),
        pytest.param(["update"], Action.update, id="update"),
        pytest.param(["delete"], Action.delete, id="delete"),
        pytest.param(["delete", "create"], Action.replace, id="replace-destroy-first"),
        pytest.param(["create", "delete"], Action.replace, id="replace-create-first"),
        pytest.param(["no-op"], Action.no_op, id="no-op"),
        pytest.param(["forget"], Action.delete, id="forget-leaves-state"),
        pytest.param(["read"], None, id="data-source-read"),
    ],
)
def test_terraform_actions_map_to_the_vocabulary(actions: list[str], expected: Action | None) -> None:
    assert action_of(actions) is expected


@pytest.mark.parametrize(
    ("value", "sensitive", "expected"),
    [
        pytest.param("s3cret", True, MASK, id="whole-value"),
        pytest.param(None, True, None, id="null-stays-null"),
        pytest.param({"user": "a", "password": "p"}, {"password": True}, {"user": "a", "password": MASK}, id="map-key"),
        pytest.param([{"k": "x"}, {"k": "y"}], [{}, {"k": True}], [{"k": "x"}, {"k": MASK}], id="list-element"),
        pytest.param({"a": {"b": "deep"}}, {"a": {"b": True}}, {"a": {"b": MASK}}, id="nested"),
        pytest.param("plain", False, "plain", id="not-sensitive"),
    ],
)
def test_sensitive_values_are_masked_at_any_depth(value: Any, sensitive: Any, expected: Any) -> None:
    assert masked(value, sensitive) == expected


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        pytest.param(None, "", True, id="null-vs-empty-string"),
        pytest.param(None, [], True, id="null-vs-empty-list"),
        pytest.param({}, None, True, id="empty-map-vs-null"),
        pytest.param([{"a": 1, "b": None}], [{"a": 1, "b": []}], True, id="nested-noise"),
        pytest.param([1, 2], [2, 1], True, id="set-order"),
        pytest.param(None, "x", False, id="null-vs-value"),
        pytest.param([1], [1, 2], False, id="extra-element"),
    ],
)
def test_drift_comparison_ignores_only_provider_noise(left: Any, right: Any, equal: bool) -> None:
    assert same(left, right) is equal


def _plan(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"format_version": "1.2", "terraform_version": "1.11.4", "resource_changes": list(changes)}


def _change(address: str, actions: list[str], before: Any, after: Any, **extra: Any) -> dict[str, Any]:
    return {"address": address, "mode": "managed", "change": {"actions": actions, "before": before, "after": after,
                                                              **extra}}


def test_a_plan_lists_managed_resources_sorted_with_unknowns_marked_and_secrets_masked() -> None:
    parsed = parse_plan(_plan(
        _change("b.x", ["create"], None, {"name": "n", "token": "t0ken"}, after_unknown={"id": True},
                after_sensitive={"token": True}),
        _change("a.x", ["no-op"], {"v": 1}, {"v": 1}),
        {"address": "data.d.x", "mode": "data", "change": {"actions": ["read"]}},
    ))

    assert [(c.address, c.action) for c in parsed.changes] == [("a.x", Action.no_op), ("b.x", Action.create)]
    created = parsed.resources[1]
    assert created.after == {"name": "n", "token": MASK, "id": UNKNOWN}
    assert "t0ken" not in parsed.changes[1].diff


def test_the_digest_moves_when_a_masked_value_changes() -> None:
    one = parse_plan(_plan(_change("a.x", ["update"], {"p": "old"}, {"p": "one"}, after_sensitive={"p": True})))
    two = parse_plan(_plan(_change("a.x", ["update"], {"p": "old"}, {"p": "two"}, after_sensitive={"p": True})))

    assert one.changes == two.changes
    assert one.raw_digest != two.raw_digest


def test_drift_names_each_attribute_and_skips_noise_and_computed_values() -> None:
    parsed = parse_plan(_plan(_change(
        "aws_vpc.this", ["update"],
        {"tags": {"Name": "v", "owner": "hand"}, "tags_all": {"Name": "v", "owner": "hand"}, "ipv6": None,
         "arn": "arn:1"},
        {"tags": {"Name": "v"}, "tags_all": {"Name": "v"}, "ipv6": "", "arn": None},
        after_unknown={"arn": True},
    )))

    items = drift_items(parsed)

    assert [(i.address, i.field, i.desired, i.live) for i in items] == [("aws_vpc.this", "tags.owner", None, "hand")]


def test_a_resource_deleted_out_of_band_is_drift_on_the_whole_resource() -> None:
    items = drift_items(parse_plan(_plan(_change("aws_instance.node[0]", ["create"], None, {"ami": "a"}))))

    assert [(i.address, i.field, i.live) for i in items] == [("aws_instance.node[0]", "(resource)", None)]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        pytest.param("", StateVersion("", 0), id="no-state-yet"),
        pytest.param('{"lineage": "abc", "serial": 7}', StateVersion("abc", 7), id="state-file"),
    ],
)
def test_state_versions_read_from_state_files_and_round_trip(text: str, version: StateVersion) -> None:
    assert StateVersion.from_state_json(text) == version
    assert StateVersion.parse(str(version)) == version


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        pytest.param({"tags": {"owner": "x"}}, ["tags.owner"], id="plain-key"),
        pytest.param({"tags": {"kubernetes.io/role/elb": "1"}}, ['tags["kubernetes.io/role/elb"]'], id="dotted-key"),
        pytest.param({"ingress": [{"from_port": 22}]}, ["ingress"], id="sets-stay-whole"),
    ],
)
def test_attribute_paths_name_map_keys_unambiguously(value: dict[str, Any], paths: list[str]) -> None:
    assert list(flatten(value)) == paths
