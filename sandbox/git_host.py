"""A local Git host for the demo: pull requests of one local repository, spoken as Gitea's REST API.

There is no GitHub in the sandbox, yet previews need a host to read a pull request from and to post
their comment and commit status to. This server keeps the pull requests of one local git repository
(a pull request's head is one of its branches) and answers the part of Gitea's API (`/api/v1`, as
in its swagger) that Tidegate's `GiteaClient` calls, plus Gitea's own "create a pull request" call
and the reads a person uses to look (list pulls, list a commit's statuses). Opening a pull request
calls `on_open`, where a real Gitea would deliver its `pull_request` webhook: the composition root
enqueues the preview there. Everything is kept in memory for as long as the server runs.

One account owns the repository (`owner`, id 1): it opens the pull requests, may push, and is the
account every commit resolves to. Every call needs `Authorization: token <token>`.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_ROOT = "/api/v1"
STATUS_WORDS = frozenset({"pending", "success", "error", "failure", "warning"})
SHA = re.compile(r"^[0-9a-f]{40}$")
BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


@dataclass(frozen=True)
class PullRequest:
    """A pull request the host keeps: its head branch and the commit that branch was at."""

    number: int
    title: str
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    author: str


class HostRefusal(Exception):
    """A request the host answers with an error status (as Gitea would: 401, 404, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SandboxGitHost:
    """The host's state for one repository; `serve` runs it on a loopback port."""

    repository_dir: Path
    full_name: str
    """`owner/name` as the API spells the repository."""
    token: str
    on_open: Callable[[PullRequest], None] | None = None
    base_url: str = ""
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    comments: dict[int, dict[int, str]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _next_id: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def owner(self) -> str:
        return self.full_name.partition("/")[0]

    @property
    def api_url(self) -> str:
        return self.base_url + API_ROOT

    # -- lifetime --------------------------------------------------------------------------------

    def start(self, port: int = 0) -> SandboxGitHost:
        server = _Server(("127.0.0.1", port), _Handler)
        server.host = self
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, name="sandbox-git-host", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SandboxGitHost:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- what a person (or the demo) does ----------------------------------------------------------

    def open_pull(self, head: str, base: str, title: str) -> PullRequest:
        """Open a pull request of branch `head` into `base` (both branches of the repository)."""
        for name, value in (("head", head), ("base", base)):
            if not BRANCH.match(value):
                raise HostRefusal(422, f"{name}: {value!r} is not a branch name")
        head_sha, base_sha = self._branch(head), self._branch(base)
        if head_sha == base_sha:
            raise HostRefusal(422, f"{head} has no commits that {base} lacks")
        with self._lock:
            number = len(self.pulls) + 1
            pull = PullRequest(number, title or head, head, head_sha, base, base_sha, self.owner)
            self.pulls[number] = pull
        if self.on_open is not None:
            self.on_open(pull)  # where Gitea delivers its `pull_request` webhook
        return pull

    def _branch(self, name: str) -> str:
        found = subprocess.run(["git", "-C", str(self.repository_dir), "rev-parse", "--verify", "-q",
                                f"refs/heads/{name}^{{commit}}"], capture_output=True, text=True, check=False)
        if found.returncode != 0:
            raise HostRefusal(404, f"branch {name!r} does not exist in {self.full_name}")
        return found.stdout.strip()

    # -- the API -------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: Any) -> tuple[int, Any]:
        """One request: (HTTP status, JSON answer)."""
        try:
            if headers.get("authorization") != f"token {self.token}":
                raise HostRefusal(401, "token is required")
            prefix = f"{API_ROOT}/repos/{self.full_name}"
            if not path.startswith(prefix + "/"):
                raise HostRefusal(404, f"{path}: no such repository")
            rest = path[len(prefix):]
            for verb, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, rest)
                if match and verb == method:
                    return handler(self, match, query, body)
            raise HostRefusal(404, f"{method} {path}: not an API route of this host")
        except HostRefusal as refusal:
            return refusal.status, {"message": str(refusal)}

    def user_json(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": 1 if login == self.owner else 0}

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def pull(self, match: re.Match[str]) -> PullRequest:
        pull = self.pulls.get(int(match["number"]))
        if pull is None:
            raise HostRefusal(404, f"no pull request {match['number']}")
        return pull


def _fields(body: Any, required: set[str], allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not required <= set(body) or not set(body) <= allowed:
        raise HostRefusal(422, f"the body must be a JSON object with {sorted(required)} (allowed: {sorted(allowed)})")
    return body


def _paged(query: dict[str, list[str]], items: list[Any]) -> tuple[int, Any]:
    try:
        limit = int((query.get("limit") or query.get("per_page") or ["30"])[0])
        page = int(query.get("page", ["1"])[0])
    except ValueError as error:
        raise HostRefusal(422, "page and limit are integers") from error
    limit, page = max(1, min(limit, 100)), max(1, page)
    return 200, items[(page - 1) * limit: page * limit]


def _pull_json(host: SandboxGitHost, pull: PullRequest) -> dict[str, Any]:
    repo = {"full_name": host.full_name, "id": 1}
    return {"number": pull.number, "title": pull.title, "user": host.user_json(pull.author), "state": "open",
            "merged": False, "merge_commit_sha": None,
            "html_url": f"{host.base_url}/{host.full_name}/pulls/{pull.number}",
            "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo_id": 1, "repo": repo},
            "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo_id": 1, "repo": repo}}


Match = re.Match[str]
Query = dict[str, list[str]]


def _create_pull(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    data = _fields(body, {"head", "base"}, {"head", "base", "title", "body"})
    return 201, _pull_json(host, host.open_pull(str(data["head"]), str(data["base"]), str(data.get("title") or "")))


def _list_pulls(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    return _paged(query, [_pull_json(host, pull) for pull in host.pulls.values()])


def _get_pull(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    return 200, _pull_json(host, host.pull(match))


def _reviews(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    host.pull(match)
    return _paged(query, [])


def _create_status(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    if not SHA.match(match["sha"]):
        raise HostRefusal(422, "sha must be a full commit SHA")
    data = _fields(body, {"state"}, {"state", "target_url", "description", "context"})
    if data["state"] not in STATUS_WORDS:
        raise HostRefusal(422, f"state {data['state']!r} is not one of {sorted(STATUS_WORDS)}")
    status = {"id": host.new_id(), "status": data["state"], "description": data.get("description") or "",
              "target_url": data.get("target_url") or "", "context": data.get("context") or "default"}
    host.statuses.setdefault(match["sha"], []).append(status)
    return 201, status


def _list_statuses(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    return _paged(query, list(reversed(host.statuses.get(match["sha"], []))))  # newest first, as Gitea


def _comment_json(host: SandboxGitHost, comment_id: int, text: str) -> dict[str, Any]:
    return {"id": comment_id, "body": text, "user": host.user_json("tidegate")}


def _list_comments(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    pull = host.pull(match)
    return _paged(query, [_comment_json(host, key, text) for key, text in host.comments.get(pull.number, {}).items()])


def _create_comment(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    pull = host.pull(match)
    text = str(_fields(body, {"body"}, {"body"})["body"])
    comment_id = host.new_id()
    host.comments.setdefault(pull.number, {})[comment_id] = text
    return 201, _comment_json(host, comment_id, text)


def _edit_comment(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    text = str(_fields(body, {"body"}, {"body"})["body"])
    for comments in host.comments.values():
        if int(match["id"]) in comments:
            comments[int(match["id"])] = text
            return 200, _comment_json(host, int(match["id"]), text)
    raise HostRefusal(404, f"no comment {match['id']}")


def _permission(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    login = match["user"]
    return 200, {"permission": "owner" if login == host.owner else "none", "user": host.user_json(login)}


def _commit(host: SandboxGitHost, match: Match, query: Query, body: Any) -> tuple[int, Any]:
    if not SHA.match(match["sha"]):
        raise HostRefusal(422, "sha must be a full commit SHA")
    owner = host.user_json(host.owner)
    return 200, {"sha": match["sha"], "author": owner, "committer": owner}


Route = tuple[str, str, Callable[[SandboxGitHost, Match, Query, Any], tuple[int, Any]]]
_N = r"(?P<number>\d+)"
ROUTES: list[Route] = [
    ("POST", "/pulls", _create_pull),
    ("GET", "/pulls", _list_pulls),
    ("GET", "/pulls/" + _N, _get_pull),
    ("GET", "/pulls/" + _N + "/reviews", _reviews),
    ("POST", r"/statuses/(?P<sha>[^/]+)", _create_status),
    ("GET", r"/statuses/(?P<sha>[^/]+)", _list_statuses),
    ("GET", "/issues/" + _N + "/comments", _list_comments),
    ("POST", "/issues/" + _N + "/comments", _create_comment),
    ("PATCH", r"/issues/comments/(?P<id>\d+)", _edit_comment),
    ("GET", r"/collaborators/(?P<user>[^/]+)/permission", _permission),
    ("GET", r"/git/commits/(?P<sha>[^/]+)", _commit),
]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, payload = self.server.host.handle(self.command, parts.path, parse_qs(parts.query), headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    host: SandboxGitHost
