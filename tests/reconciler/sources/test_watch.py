"""LocalRefWatcher on real repositories: a local commit or push triggers an immediate poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sources.watch import LocalRefWatcher, local_path
from tests.reconciler.sources.origins import FILES, Origin
from tests.support.git_server import WorkClone, commit_and_push, git


class Calls:
    """Keys the watcher reported, with a way to wait for them."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.arrived = threading.Event()

    def __call__(self, key: str) -> None:
        self.keys.append(key)
        self.arrived.set()

    def wait(self, timeout: float = 2.0) -> bool:
        return self.arrived.wait(timeout)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def watcher(calls: Calls) -> Iterator[LocalRefWatcher]:
    with LocalRefWatcher(calls) as running:
        yield running


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/srv/config.git", Path("/srv/config.git")),
        ("relative/repo", Path("relative/repo")),
        ("file:///srv/config%20repo.git", Path("/srv/config repo.git")),
        ("file://localhost/srv/config.git", Path("/srv/config.git")),
        ("https://example.test/org/config.git", None),
        ("git@example.test:org/config.git", None),
        ("ssh://git@example.test/config.git", None),
        ("file://other-host/srv/config.git", None),
    ],
    ids=["absolute", "relative", "file-url-quoted", "file-url-localhost", "https", "scp-like", "ssh",
         "file-remote-host"],
)
def test_local_path_recognises_repositories_on_this_machine(url: str, expected: Path | None) -> None:
    assert local_path(url) == expected


def test_a_push_to_a_local_bare_repo_fires_the_callback_within_two_seconds(
    origin: Origin, watcher: LocalRefWatcher, calls: Calls
) -> None:
    path = local_path(origin.url)
    assert path is not None
    watcher.add("config", path)

    started = time.monotonic()
    commit_and_push(origin.path, {"README.md": "# pushed\n"}, "Push")

    assert calls.wait(2.0), "no callback within 2 s"
    assert time.monotonic() - started < 2.0
    assert set(calls.keys) == {"config"}


def test_a_commit_in_a_local_working_repo_fires_the_callback(
    origin: Origin, tmp_path: Path, watcher: LocalRefWatcher, calls: Calls
) -> None:
    work = WorkClone(origin.path, tmp_path / "work")
    watcher.add("laptop", work.path)

    work.commit("Local edit", {"README.md": "# local\n"})

    assert calls.wait(2.0)
    assert set(calls.keys) == {"laptop"}


def test_a_burst_of_ref_updates_fires_once(origin: Origin, watcher: LocalRefWatcher, calls: Calls) -> None:
    watcher.add("config", origin.path)

    for index in range(5):
        git("--git-dir", str(origin.path), "update-ref", f"refs/heads/burst-{index}", origin.first)

    assert calls.wait(2.0)
    time.sleep(0.4)
    assert calls.keys == ["config"]


def test_writing_objects_without_moving_a_ref_fires_nothing(
    origin: Origin, tmp_path: Path, watcher: LocalRefWatcher, calls: Calls
) -> None:
    blob = tmp_path / "blob.txt"
    blob.write_text("an object, not a ref\n")
    watcher.add("config", origin.path)

    git("--git-dir", str(origin.path), "hash-object", "-w", str(blob))
    (origin.path / "description").write_text("not a ref\n")

    assert not calls.wait(0.5)


def test_a_removed_repository_is_no_longer_watched(
    origin: Origin, tmp_path: Path, watcher: LocalRefWatcher, calls: Calls
) -> None:
    other = tmp_path / "other.git"
    git("init", "--quiet", "--bare", str(other))
    watcher.add("config", origin.path)
    watcher.add("other", other)
    watcher.remove("config")

    commit_and_push(origin.path, FILES, "Ignored")
    commit_and_push(other, {"a": "1"}, "Seen")

    assert calls.wait(2.0)
    time.sleep(0.3)
    assert set(calls.keys) == {"other"}


def test_a_failing_callback_does_not_stop_the_watcher(origin: Origin, calls: Calls) -> None:
    failures: list[str] = []

    def flaky(key: str) -> None:
        if not failures:
            failures.append(key)
            raise RuntimeError("poll failed")
        calls(key)

    with LocalRefWatcher(flaky) as watcher:
        watcher.add("config", origin.path)
        commit_and_push(origin.path, {"README.md": "1"}, "One")
        time.sleep(0.3)
        commit_and_push(origin.path, {"README.md": "2"}, "Two")
        assert calls.wait(2.0)

    assert failures == ["config"]


def test_a_commit_in_a_linked_worktree_fires_the_callback(
    origin: Origin, tmp_path: Path, watcher: LocalRefWatcher, calls: Calls
) -> None:
    work = WorkClone(origin.path, tmp_path / "work")
    git("worktree", "add", "--quiet", "-b", "hotfix", str(tmp_path / "hotfix"), cwd=work.path)
    watcher.add("hotfix", tmp_path / "hotfix")

    git("commit", "--quiet", "--allow-empty", "-m", "Hotfix", cwd=tmp_path / "hotfix")

    assert calls.wait(2.0)


def test_a_watcher_that_never_started_stops_cleanly(origin: Origin, calls: Calls) -> None:
    watcher = LocalRefWatcher(calls)
    watcher.add("config", origin.path)
    watcher.remove("config")
    watcher.stop()
