"""A kustomization names a URL and ships a local directory spelled like it: nothing is ever fetched.

Kustomize parses a reference as a URL before it looks for a local path, so a decoy directory
`http:/127.0.0.1:PORT/` once made Tidegate's guard think the reference was local while kustomize
fetched the URL (server-side request forgery from validate, sync and preview, and applied content
that no reviewer saw). Now URL-like references are refused whatever exists, and kustomize runs
sealed without any network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.desired import check_checkout
from reconciler.rendering.kustomize import run_kustomize
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS
from tests.security.conftest import CountingServer, WorkerData

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"


def _repo_with_decoy(tmp_path: Path, url: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    base = repo / "apps" / "web" / "base"
    kustomization = base / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("resources:\n", f"resources:\n  - {url}\n", 1))
    decoy = base / url.replace("://", ":/")
    decoy.mkdir(parents=True)
    (decoy / "kustomization.yaml").write_text("resources: []\n")
    return repo


def test_a_decoy_directory_does_not_make_a_url_local_and_validate_fetches_nothing(
        tmp_path: Path, worker_data: WorkerData, counting_server: CountingServer) -> None:
    repo = _repo_with_decoy(tmp_path, counting_server.url)

    result = check_checkout(repo, cache_dir=tmp_path / "cache")

    refused = [str(issue) for issue in result.issues if "remote resources are not allowed" in issue.message]
    assert refused and refused[0].startswith("apps/web/base/kustomization.yaml:"), [str(i) for i in result.issues]
    assert counting_server.requests == []


def test_kustomize_itself_has_no_network_even_if_a_url_got_past_the_guard(
        tmp_path: Path, worker_data: WorkerData, counting_server: CountingServer) -> None:
    app = tmp_path / "repo" / "apps" / "web"
    app.mkdir(parents=True)
    (app / "kustomization.yaml").write_text(f"resources:\n  - {counting_server.url}\n")

    output, issues = run_kustomize(tmp_path / "repo", "apps/web", "apps/web/kustomization.yaml", DEFAULT_RENDER_LIMITS)

    assert output is None and issues and "kubectl kustomize failed" in issues[0].message
    assert counting_server.requests == []
