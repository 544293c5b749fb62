"""Fixtures shared by every test folder: the example config repo, pristine or as a mutable copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "examples" / "infra-repo"


@pytest.fixture(scope="session")
def example_repo() -> Path:
    """The example repo as committed; tests must not write into it."""
    return EXAMPLE_REPO


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A private copy of the example repo that a test may mutate."""
    target = tmp_path / "infra-repo"
    shutil.copytree(EXAMPLE_REPO, target, symlinks=True)
    return target
