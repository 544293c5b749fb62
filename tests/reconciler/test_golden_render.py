"""Golden test: the exact difference between the staging and production renders of the example.

If an overlay changes, this test fails and shows the new difference; after checking it, refresh
the golden file with `TIDEGATE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/reconciler/test_golden_render.py`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml

from reconciler.desired import DesiredState, check_checkout

GOLDEN = Path(__file__).parent / "golden" / "staging-vs-production.diff"


def plain_yaml(state: DesiredState) -> list[str]:
    """Manifests only (no source comments), in render order, one YAML document each."""
    return [yaml.safe_dump(m.body, sort_keys=True) for m in state.manifests()]


def render_difference(root: Path) -> str:
    result = check_checkout(root)
    assert result.issues == []
    staging, production = (plain_yaml(result.environments[name]) for name in ("staging", "production"))
    lines = difflib.unified_diff(
        "---\n".join(staging).splitlines(keepends=True),
        "---\n".join(production).splitlines(keepends=True),
        fromfile="staging", tofile="production", n=2,
    )
    return "".join(lines)


def test_production_differs_from_staging_exactly_as_the_overlays_say(example_repo: Path) -> None:
    difference = render_difference(example_repo)
    if os.environ.get("TIDEGATE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(difference)
    assert difference == GOLDEN.read_text()


def test_the_overlays_change_replicas_images_and_config(example_repo: Path) -> None:
    changed = [line for line in render_difference(example_repo).splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    text = "\n".join(changed)
    assert "replicas: 3" in text and "replicas: 1" in text
    assert "nginx:1.27.2" in text and "nginx:1.27.3" in text
    assert "web.example.test" in text
