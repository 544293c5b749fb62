"""Terraform tfvars and Ansible extra vars: canonical JSON, so equal variables give equal bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from reconciler.rendering import render_extra_vars, render_tfvars

VARIABLES = {"node_count": 3, "cluster_name": "prod", "tags": {"team": "platform", "env": "prod"},
             "zones": ["a", "b"], "enabled": True, "ratio": 0.5, "nothing": None, "name": "café"}


@pytest.mark.parametrize("render", [render_tfvars, render_extra_vars], ids=["tfvars", "extra-vars"])
def test_the_text_is_canonical_json_with_a_trailing_newline(render: Callable[[Mapping[str, Any]], str]) -> None:
    text = render(VARIABLES)

    assert json.loads(text) == VARIABLES
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == render(dict(reversed(list(VARIABLES.items()))))
    assert list(json.loads(text)) == sorted(VARIABLES)
    assert '"café"' in text


def test_tfvars_text_is_exact() -> None:
    assert render_tfvars({"b": 1, "a": {"y": [1, 2], "x": "s"}}) == (
        '{\n  "a": {\n    "x": "s",\n    "y": [\n      1,\n      2\n    ]\n  },\n  "b": 1\n}\n'
    )


@pytest.mark.parametrize(
    ("render", "variables", "message"),
    [
        (render_tfvars, {"1abc": 1}, "not a valid Terraform variable name"),
        (render_tfvars, {"a b": 1}, "not a valid Terraform variable name"),
        (render_extra_vars, {"log-level": 1}, "not a valid Ansible variable name"),
        (render_tfvars, {"ratio": float("nan")}, "must be JSON values"),
        (render_extra_vars, {"when": object()}, "must be JSON values"),
    ],
    ids=["tf-digit", "tf-space", "ansible-dash", "nan", "object"],
)
def test_variables_that_cannot_be_written_faithfully_are_refused(
        render: Callable[[Mapping[str, Any]], str], variables: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(variables)


def test_terraform_allows_dashes_in_names_where_ansible_does_not() -> None:
    assert json.loads(render_tfvars({"log-level": "debug"})) == {"log-level": "debug"}
