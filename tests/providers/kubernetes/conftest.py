"""Manifests for schema tests, read with the located YAML reader as rendering does."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from providers.kubernetes.schema import PlainManifest
from repo_schema.documents import read_documents

Load = Callable[..., list[PlainManifest]]


@pytest.fixture
def load() -> Load:
    """YAML text → one `PlainManifest` per document, each keeping its document for line mapping."""

    def load(text: str, file: str = "apps/web/manifests.yaml") -> list[PlainManifest]:
        documents, issues = read_documents(textwrap.dedent(text), file)
        assert issues == []
        return [PlainManifest(document.data, document.start, document) for document in documents]

    return load
