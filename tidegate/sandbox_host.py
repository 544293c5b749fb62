"""The sandbox's Git host in `tidegate up`, and `tidegate sandbox pr BRANCH` to open a pull request on it.

With the sandbox, `up` serves the local config repository's pull requests as a small Gitea
(`sandbox.git_host`) and registers the repository with it as its host, so a pull request is
previewed by the real path: the `preview` queue, `reconciler.previews` planning the branch against
the sandbox, the comment and commit status posted through `GiteaClient`. Opening a pull request
enqueues its preview where a real host would deliver a webhook to `tidegate serve`; `up` has no
HTTP server to receive one. Where the host listens and its token are written to
`<data dir>/sandbox/git-host.json` (0600) for `tidegate sandbox pr`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from reconciler.hosts import COMMENT_MARKER
from reconciler.preview_tasks import CeleryPreviewQueue, PreviewQueue
from reconciler.previews import PreviewRequest
from reconciler.repositories import HostSettings
from sandbox.git_host import PullRequest, SandboxGitHost
from store import GitHost
from tidegate.settings import Settings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
FINAL = frozenset({"success", "failure", "error"})


@dataclass(frozen=True)
class HostFile:
    """What `git-host.json` holds: the API, the repository's name on it, the token."""

    api_url: str
    repository: str
    token: str

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "sandbox" / "git-host.json"


def start_host(repository_dir: Path, name: str, data_dir: Path) -> SandboxGitHost:
    """A running host for the repository (its previews are enqueued once `repository_id` is known)."""
    host = SandboxGitHost(repository_dir, f"sandbox/{name}", secrets.token_urlsafe(24)).start()
    path = HostFile.path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"api_url": host.api_url, "repository": host.full_name, "token": host.token}, handle)
    return host


def host_settings(host: SandboxGitHost) -> HostSettings:
    """How the repository is registered: Gitea at the sandbox host, with its token (sealed on save)."""
    return HostSettings(GitHost.GITEA, host.api_url, host.full_name, host.token)


def enqueue_previews(host: SandboxGitHost, repository_id: int, settings: Settings,
                     queue: PreviewQueue | None = None) -> None:
    """From now on, an opened pull request is previewed, as a `pull_request` webhook would have it."""
    target = queue or CeleryPreviewQueue()

    def opened(pull: PullRequest) -> None:
        target.preview(PreviewRequest(repository_id=repository_id, number=pull.number, head_sha=pull.head_sha,
                                      base_ref=pull.base_ref, base_sha=pull.base_sha, title=pull.title[:500],
                                      author=pull.author, author_id="1", public_url=settings.public_url))

    host.on_open = opened


# --- tidegate sandbox pr -----------------------------------------------------------------------------

def _api(data_dir: Path) -> tuple[httpx.Client, str]:
    path = HostFile.path(data_dir)
    try:
        found = HostFile(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        err.print(f"no sandbox Git host in {data_dir} ({path}: {type(error).__name__}); it runs while "
                  "`tidegate up` runs with its sandbox", markup=False)
        raise typer.Exit(1) from None
    client = httpx.Client(base_url=found.api_url + "/", headers={"Authorization": f"token {found.token}"},
                          timeout=15.0)
    return client, f"repos/{found.repository}"


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        err.print(f"the sandbox Git host did not answer ({type(error).__name__}): is `tidegate up` running?",
                  markup=False)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        err.print(f"the sandbox Git host refused: {response.json().get('message')}", markup=False)
        raise typer.Exit(1)
    return response.json()


def open_pr(
    branch: Annotated[str, typer.Argument(help="The branch to propose (pushed to the config repo).")],
    title: Annotated[str, typer.Option(help="The pull request's title.")] = "",
    base: Annotated[str, typer.Option(help="The branch it would merge into.")] = "main",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the preview's comment (0: do not wait).")] = 600.0,
) -> None:
    """Open a pull request on the sandbox's Git host; its preview is planned by the workers, and its
    comment printed once it is posted."""
    client, repo = _api(Settings().data_dir)
    pull = _call(client, "POST", f"{repo}/pulls", json={"head": branch, "base": base, "title": title or branch})
    number, sha = pull["number"], pull["head"]["sha"]
    out.print(f"opened pull request #{number}: {branch} ({sha[:12]}) into {base}; the workers preview it",
              markup=False)
    if wait <= 0:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        states = [status["status"] for status in _call(client, "GET", f"{repo}/statuses/{sha}")]
        if states and states[0] in FINAL:
            comments = _call(client, "GET", f"{repo}/issues/{number}/comments")
            body = next((c["body"] for c in comments if str(c["body"]).startswith(COMMENT_MARKER)), "")
            out.print(f"preview {states[0]}; the comment on #{number}:", markup=False)
            out.print(body.removeprefix(COMMENT_MARKER).strip(), markup=False)
            raise typer.Exit(0 if states[0] == "success" else 1)
        time.sleep(2)
    err.print(f"no preview of #{number} after {wait:.0f}s (the worker's log says why)", markup=False)
    raise typer.Exit(1)


def register(sandbox: typer.Typer) -> None:
    """Add `pr` to the `tidegate sandbox` group."""
    sandbox.command("pr")(open_pr)
