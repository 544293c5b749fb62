"""Rendered inputs of the infrastructure and configuration stages.

Terraform reads `tidegate.auto.tfvars.json` from its workspace and Ansible takes extra vars as
JSON. Both texts are canonical (sorted keys, fixed separators, one trailing newline), so the same
variables always give the same bytes and the plan fingerprint does not move between workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TFVARS_FILE = "tidegate.auto.tfvars.json"

_TERRAFORM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ANSIBLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_tfvars(variables: Mapping[str, Any]) -> str:
    """The text of `tidegate.auto.tfvars.json`. Raises ValueError for names Terraform rejects or
    values JSON cannot hold (NaN, non-string keys, objects)."""
    return _canonical(variables, _TERRAFORM_NAME, "Terraform variable")


def render_extra_vars(variables: Mapping[str, Any]) -> str:
    """Ansible extra vars as JSON (`--extra-vars @file.json`). Names must be Python identifiers,
    which Ansible requires of variables; ValueError otherwise."""
    return _canonical(variables, _ANSIBLE_NAME, "Ansible variable")


def _canonical(variables: Mapping[str, Any], pattern: re.Pattern[str], what: str) -> str:
    for name in variables:
        if not isinstance(name, str) or not pattern.match(name):
            raise ValueError(f"{name!r} is not a valid {what} name")
    try:
        text = json.dumps(dict(variables), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}s must be JSON values: {error}") from None
    return text + "\n"
