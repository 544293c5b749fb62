"""Rendering reads only inside the checkout: `..`, absolute paths and escaping symlinks are issues."""

from __future__ import annotations

import os

import pytest

from repo_schema.paths import UnsafePath, normalize
from tests.reconciler.rendering.conftest import Repo


@pytest.mark.parametrize(
    ("path", "base", "expected"),
    [("apps/web", "", "apps/web"), ("./apps//web/", "", "apps/web"), ("../base", "apps/web/overlay", "apps/web/base"),
     (".", "", ""), ("a/../b", "", "b")],
    ids=["plain", "messy", "sibling", "root", "inner-dotdot"],
)
def test_paths_inside_the_checkout_are_normalized(path: str, base: str, expected: str) -> None:
    assert normalize(path, base=base) == expected


@pytest.mark.parametrize(
    ("path", "base"),
    [("../x", ""), ("a/../../x", ""), ("../../../etc", "apps/web"), ("/etc/passwd", ""), ("C:\\x", ""),
     ("~/x", ""), ("", "")],
    ids=["dotdot", "inner-escape", "from-base", "absolute", "windows-drive", "home", "empty"],
)
def test_paths_leaving_the_checkout_are_refused(path: str, base: str) -> None:
    with pytest.raises(UnsafePath):
        normalize(path, base=base)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("../outside", "../outside:1:1: path: '../outside' leaves the repository (it climbs above its root "
                    "with '..')"),
     ("apps/../../outside", "apps/../../outside:1:1: path: 'apps/../../outside' leaves the repository (it "
                            "climbs above its root with '..')"),
     ("/etc", "/etc:1:1: path: '/etc' is absolute; paths are relative to the repository root")],
    ids=["dotdot", "nested-dotdot", "absolute"],
)
def test_a_workload_path_outside_the_checkout_is_refused(repo: Repo, path: str, expected: str) -> None:
    assert repo.issues(path) == [expected]


def test_a_symlinked_file_pointing_outside_is_refused_and_named(repo: Repo) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    repo.link("apps/web/secret.yaml", repo.outside / "secret.yaml")

    workload = repo.render("apps/web")

    assert [str(i) for i in workload.issues] == [
        "apps/web/secret.yaml:1:1: <file>: 'apps/web/secret.yaml' is or goes through a symlink that resolves "
        "outside the repository"
    ]
    assert [m.identity.name for m in workload.manifests] == ["web"]


def test_a_symlinked_directory_pointing_outside_is_refused_at_any_depth(repo: Repo) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    repo.link("apps/web/deep/er/stolen", repo.outside)

    assert repo.issues("apps/web") == [
        "apps/web/deep/er/stolen:1:1: <file>: 'apps/web/deep/er/stolen' is or goes through a symlink that "
        "resolves outside the repository"
    ]


def test_a_workload_reached_through_an_escaping_symlink_is_refused(repo: Repo) -> None:
    repo.link("apps/linked", repo.outside)

    assert repo.issues("apps/linked") == [
        "apps/linked:1:1: path: 'apps/linked' is or goes through a symlink that resolves outside the repository"
    ]


def test_symlinks_that_stay_inside_are_followed_and_loops_visited_once(repo: Repo) -> None:
    repo.write("shared/svc.yaml", repo.service())
    repo.link("apps/web/shared", repo.root / "shared")
    repo.link("apps/web/loop", "..")

    workload = repo.render("apps/web")

    assert workload.issues == ()
    assert [str(m.location) for m in workload.manifests] == ["apps/web/shared/svc.yaml:1:1"]


def test_a_fifo_is_not_read_so_a_worker_cannot_hang(repo: Repo) -> None:
    repo.write("apps/web/svc.yaml", repo.service())
    os.mkfifo(repo.root / "apps/web/pipe.yaml")

    workload = repo.render("apps/web")

    assert [m.identity.name for m in workload.manifests] == ["web"]
