"""The example config repo's workloads through kubectl against the emulator: apply, then diff finds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_applied_example_workloads_diff_clean_and_an_edit_shows_up(kubectl: Any, example_repo: Path,
                                                                   environment: str) -> None:
    platform = example_repo / "apps" / "platform"
    crds = [p for p in platform.iterdir() if p.name.endswith("-crd.yaml")]
    for crd in crds:  # CRDs first, then the namespaced workloads, then the custom resources
        assert kubectl("apply", "-f", str(crd)).returncode == 0
    overlays = [example_repo / "apps" / app / "overlays" / environment for app in ("web", "worker")]
    for overlay in overlays:
        applied = kubectl("apply", "-k", str(overlay))
        assert applied.returncode == 0, applied.stderr
    result = kubectl("apply", "-f", str(platform))
    assert result.returncode == 0, result.stderr
    for overlay in overlays:
        diff = kubectl("diff", "-k", str(overlay))
        assert diff.returncode == 0, diff.stdout + diff.stderr
        server_side = kubectl("diff", "--server-side", "--force-conflicts", "-k", str(overlay))
        assert server_side.returncode == 0, server_side.stdout + server_side.stderr
    assert kubectl("diff", "-f", str(platform)).returncode == 0

    rendered = kubectl("kustomize", str(overlays[0])).stdout
    edited = rendered.replace("kind: ConfigMap\nmetadata:", "kind: ConfigMap\nmetadata:\n  annotations:\n"
                              "    edited: \"yes\"", 1)
    assert edited != rendered
    changed = kubectl("diff", "-f", "-", stdin=edited)
    assert changed.returncode == 1
    assert '+    edited: "yes"' in changed.stdout
