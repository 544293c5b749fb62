"""The origin repository that source tests push to and poll: its files, token and addresses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.sources.git import GitAuth, GitSource

TOKEN = "tg-test-token-8f2c1e"
FILES = {
    "tidegate.yaml": "kind: RepositoryConfig\n",
    "apps/web/deployment.yaml": "replicas: 1\n",
    "apps/web/service.yaml": "port: 80\n",
    "README.md": "# config\n",
}


@dataclass(frozen=True)
class Origin:
    """The bare repo teams push to, where it is served, and its first commit."""

    path: Path
    url: str
    first: str
    auth: GitAuth | None = None
    push_url: str = ""  # where a teammate pushes to (the served URL itself, not the directory)


SourceFactory = Callable[..., GitSource]
"""The `source_for` fixture: `source_for(origin, branch="main", auth=None) -> GitSource`."""
