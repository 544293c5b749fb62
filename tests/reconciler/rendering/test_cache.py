"""The render cache: same inputs → the stored workload, any changed input → a new key."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import reconciler.rendering.cache as cache_module
from reconciler.rendering import RenderCache, RenderedWorkload, cache_key, render_workload_cached
from reconciler.rendering.workload import render_workload
from tests.reconciler.rendering.conftest import Repo

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path: Path) -> RenderCache:
    return RenderCache(tmp_path / "data" / "cache" / "render")


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths actually rendered (cache misses), recorded around the real renderer."""
    calls: list[str] = []
    real = render_workload  # the function the cache module calls

    def recording(checkout: Path, path: str, variables: Mapping[str, Any], **kwargs: Any) -> RenderedWorkload:
        calls.append(path)
        return real(checkout, path, variables, **kwargs)

    monkeypatch.setattr(cache_module, "render_workload", recording)
    return calls


@pytest.fixture
def kustomized(repo: Repo) -> Repo:
    repo.write("apps/web/base/kustomization.yaml", "resources: [deployment.yaml]\n")
    repo.write("apps/web/base/deployment.yaml", repo.deployment())
    repo.write("apps/web/base/unrelated.txt", "not read by kustomize")
    repo.write("apps/web/overlay/kustomization.yaml", "resources: [../base]\nnamePrefix: prod-\n")
    return repo


@pytest.mark.integration
def test_a_cache_hit_returns_identical_manifests_without_rendering(
        kustomized: Repo, cache: RenderCache, renders: list[str]) -> None:
    first = render_workload_cached(kustomized.root, "apps/web/overlay", {}, revision=REVISION, cache=cache)
    second = render_workload_cached(kustomized.root, "apps/web/overlay", {}, revision=REVISION, cache=cache)

    assert renders == ["apps/web/overlay"]
    assert second == first
    assert second.manifests[0].locate(("spec", "replicas")) == first.manifests[0].locate(("spec", "replicas"))
    assert str(second.manifests[0].locate(("spec", "replicas"))) == "apps/web/base/deployment.yaml:6:13"


def test_plain_directory_manifests_survive_the_round_trip_with_their_documents(
        repo: Repo, cache: RenderCache, renders: list[str]) -> None:
    repo.write("apps/web/all.yaml", repo.deployment() + "---\n" + repo.service())
    first = render_workload_cached(repo.root, "apps/web", {}, revision=REVISION, cache=cache)
    second = render_workload_cached(repo.root, "apps/web", {}, revision=REVISION, cache=cache)

    assert renders == ["apps/web"]
    assert second == first
    assert second.manifests[1].document is not None
    assert second.manifests[1].document.data is second.manifests[1].body


def key(repo: Repo, path: str, variables: Mapping[str, Any] | None = None) -> str | None:
    return cache_key(repo.root, path, variables or {})


@pytest.mark.parametrize(
    ("change", "changes_key"),
    [
        (lambda repo: repo.write("apps/web/base/deployment.yaml", repo.deployment(replicas=3)), True),
        (lambda repo: repo.write("apps/web/overlay/kustomization.yaml", "resources: [../base]\n"), True),
        (lambda repo: repo.write("apps/web/base/unrelated.txt", "changed"), False),
        (lambda repo: repo.write("apps/other/x.yaml", "kind: X"), False),
    ],
    ids=["base-file", "overlay-kustomization", "file-kustomize-does-not-read", "other-app"],
)
def test_the_key_follows_every_file_kustomize_reads(
        kustomized: Repo, change: Callable[[Repo], object], changes_key: bool) -> None:
    before = key(kustomized, "apps/web/overlay")
    change(kustomized)

    assert (key(kustomized, "apps/web/overlay") != before) is changes_key


def test_the_key_follows_variables_and_directory_files_not_the_revision(repo: Repo) -> None:
    repo.write("apps/s/cm.yaml.j2", "x: {{ y }}")
    repo.write("apps/s/partial.j2", "included")
    base = key(repo, "apps/s", {"y": 1})

    assert key(repo, "apps/s", {"y": 1}) == base  # at any revision: a commit elsewhere re-renders nothing here
    assert key(repo, "apps/s", {"y": 2}) != base
    repo.write("apps/s/partial.j2", "changed")  # templates may include any file of the directory
    assert key(repo, "apps/s", {"y": 1}) != base


@pytest.mark.parametrize(
    ("path", "variables"),
    [("../escape", {}), ("apps/missing", {}), ("apps/s", {"bad": float("nan")}), ("apps/s", {"o": object()})],
    ids=["escaping-path", "missing", "nan-variable", "object-variable"],
)
def test_inputs_that_cannot_be_keyed_are_not_cached(repo: Repo, path: str, variables: dict[str, object]) -> None:
    repo.write("apps/s/cm.yaml", repo.service())

    assert key(repo, path, variables) is None


def test_renders_with_issues_are_not_stored(repo: Repo, cache: RenderCache, renders: list[str]) -> None:
    repo.write("apps/bad/x.yaml", "- not a manifest\n")

    for _ in range(2):
        render_workload_cached(repo.root, "apps/bad", {}, revision=REVISION, cache=cache)

    assert renders == ["apps/bad", "apps/bad"]
    assert not cache.directory.exists() or not any(cache.directory.rglob("*.json"))


def test_entries_are_written_atomically_outside_the_checkout(repo: Repo, cache: RenderCache) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    files_before = sorted(repo.root.rglob("*"))

    render_workload_cached(repo.root, "apps/web", {}, revision=REVISION, cache=cache)

    assert sorted(repo.root.rglob("*")) == files_before
    entries = list(cache.directory.rglob("*"))
    [entry] = [path for path in entries if path.is_file()]
    assert not entry.name.startswith(".tmp-")
    assert json.loads(entry.read_text())["revision"] == REVISION


def test_a_cache_inside_the_checkout_is_refused(repo: Repo) -> None:
    repo.write("apps/web/svc.yaml", repo.service())

    with pytest.raises(ValueError, match="inside the checkout"):
        render_workload_cached(repo.root, "apps/web", {}, revision=REVISION,
                               cache=RenderCache(repo.root / ".cache"))


@pytest.mark.parametrize("garbage", ["", "{", "[]", '{"format": 1}', '{"format": 1, "key": "%s", "workload": {}}'],
                         ids=["empty", "truncated", "list", "no-key", "no-workload"])
def test_a_damaged_entry_is_a_miss_not_a_crash(
        repo: Repo, cache: RenderCache, renders: list[str], garbage: str) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    entry_key = key(repo, "apps/web")
    assert entry_key is not None
    entry = cache.directory / entry_key[:2] / f"{entry_key}.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(garbage.replace("%s", entry_key))

    rendered = render_workload_cached(repo.root, "apps/web", {}, revision=REVISION, cache=cache)

    assert renders == ["apps/web"] and rendered.ok
    assert cache.get(entry_key) == rendered  # the miss was stored again, whole


def test_keys_cannot_name_paths(cache: RenderCache) -> None:
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")
