"""A workload template asks for a gigabyte: it fails at its line, and the worker never holds it.

`{{ 'a'.ljust(10**9) }}` took 1.2 GB in the worker. Templates now render in a sealed child with a
memory limit and a time limit, and padding widths beyond the output cap are refused outright.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import pytest

from reconciler.desired import check_checkout
from tests.security.conftest import WorkerData

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"


@pytest.mark.parametrize(
    ("expression", "message"),
    [("'a'.ljust(10**9)", "a padding width above"),
     ("'%*s' % (width, 'a')", "exceeded its memory limit")],
    ids=["padding", "format-width"],
)
def test_a_memory_bomb_in_a_template_is_an_issue_at_its_line(
        tmp_path: Path, worker_data: WorkerData, expression: str, message: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    staging = repo / "environments" / "staging.yaml"
    staging.write_text(staging.read_text().replace(
        "workloads:\n", "workloads:\n    - {name: bomb, path: apps/bomb, namespace: web}\n", 1))
    (repo / "apps" / "bomb").mkdir()
    (repo / "apps" / "bomb" / "cm.yaml.j2").write_text(
        "apiVersion: v1\nkind: ConfigMap\n{% set width = 10000000000 %}\n"
        f"metadata: {{name: bomb}}\ndata: {{a: \"{{{{ {expression} }}}}\"}}\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result = check_checkout(repo, cache_dir=tmp_path / "cache", only="staging")

    issues = [str(issue) for issue in result.issues]
    assert any(text.startswith("apps/bomb/cm.yaml.j2:5:") and message in text for text in issues), issues
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 100 * 1024, "rendered in the worker"
