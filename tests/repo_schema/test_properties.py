"""Property tests: whatever bytes a config repo holds, the loader answers with located issues."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repo_schema.documents import read_documents
from repo_schema.loader import check_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
STAGING = (EXAMPLE / "environments" / "staging.yaml").read_text()

yaml_fragments = st.sampled_from(
    [":", "- ", "{", "}", "[", "]", "&a ", "*a ", "!!binary ", "<<: ", "? ", "|", ">", "'", '"', "\t",
     "\n", "  ", "on", "yes", "~", "0x1F", "1e9", "---\n", "...\n", "%YAML 1.1\n", "#", "\\", "\x00"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text_never_crashes_the_reader(text: str) -> None:
    _, issues = read_documents(text, "random.yaml")
    assert all(issue.location.file == "random.yaml" and issue.location.line >= 1 for issue in issues)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_environments_load_or_fail_with_located_issues(
    mutate_yaml: Callable[..., str], data: st.DataObject
) -> None:
    text = mutate_yaml(STAGING, data, yaml_fragments)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "repo"
        shutil.copytree(EXAMPLE, root, symlinks=True)
        (root / "environments" / "staging.yaml").write_text(text, errors="surrogateescape")
        repo, issues = check_repo(root)
    assert (repo is None) == bool(issues)
    for issue in issues:
        assert issue.location.file.startswith("environments/"), issue
        assert issue.location.line >= 1 and issue.location.column >= 1, issue
        assert issue.message and issue.field, issue
