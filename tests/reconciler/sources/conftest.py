"""A real origin repository for source tests, reachable over file://, git:// and HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sources.git import GitAuth, GitSource
from tests.reconciler.sources.origins import FILES, TOKEN, Origin, SourceFactory
from tests.support.git_server import git_daemon, git_http_server, make_bare_repo, remove_tree


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The directory the git servers export; holds `config.git`."""
    directory = tmp_path / "served"
    directory.mkdir()
    return directory


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One bare repo holding FILES, made once and copied for each test (copying is ~10x faster)."""
    path = tmp_path_factory.mktemp("template") / "config.git"
    return path, make_bare_repo(path, FILES)


def _copy_origin(template: tuple[Path, str], served: Path) -> str:
    shutil.copytree(template[0], served / "config.git")
    return template[1]


@pytest.fixture
def origin(served: Path, template: tuple[Path, str]) -> Origin:
    """The origin over file://, the cheapest transport."""
    first = _copy_origin(template, served)
    return Origin(served / "config.git", (served / "config.git").as_uri(), first)


@pytest.fixture(params=["file", "git-daemon", "http"])
def any_origin(request: pytest.FixtureRequest, served: Path, template: tuple[Path, str]) -> Iterator[Origin]:
    """The origin over each transport the reconciler supports without SSH."""
    first = _copy_origin(template, served)
    path = served / "config.git"
    if request.param == "file":
        yield Origin(path, path.as_uri(), first, push_url=str(path))
    elif request.param == "git-daemon":
        with git_daemon(served) as base:
            yield Origin(served / "config.git", base + "config.git", first, push_url=base + "config.git")
    else:
        with git_http_server(served, token=TOKEN) as base:
            push_url = base.replace("http://", f"http://teammate:{TOKEN}@") + "config.git"
            yield Origin(served / "config.git", base + "config.git", first, GitAuth(token=TOKEN), push_url)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """Where mirrors and checkouts live (checkouts are read-only, so cleaning needs care)."""
    directory = tmp_path / "data"
    directory.mkdir()
    yield directory
    remove_tree(directory)


@pytest.fixture
def source_for(cache: Path) -> SourceFactory:
    """GitSource objects with their mirrors under the test's data dir, one mirror per call."""
    made: list[GitSource] = []

    def make(origin: Origin, branch: str = "main", auth: GitAuth | None = None) -> GitSource:
        source = GitSource(origin.url, cache / "git" / f"repo{len(made)}.git", branch, auth or origin.auth)
        made.append(source)
        return source

    return make
