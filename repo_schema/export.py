"""JSON Schema of the config repo format, for editors (yaml-language-server) and external CI."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from repo_schema.models import API_VERSION, Environment, RepositoryConfig


def json_schema() -> dict[str, Any]:
    """One schema that accepts either document kind, keyed by camelCase field names."""
    _, schema = models_json_schema(
        [(Environment, "validation"), (RepositoryConfig, "validation")],
        by_alias=True,
        ref_template="#/$defs/{model}",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tidegate.dev/schemas/{API_VERSION}.json",
        "title": "Tidegate config repo documents",
        "description": "environments/*.yaml (kind Environment) and tidegate.yaml (kind RepositoryConfig).",
        "oneOf": [{"$ref": "#/$defs/Environment"}, {"$ref": "#/$defs/RepositoryConfig"}],
        "$defs": schema["$defs"],
    }
