"""A recording stand-in for a Git host's REST API (GitHub, GitLab or Gitea): the only mock Tidegate's tests use.

No GitHub exists on a test machine, so this local HTTP server plays one. It answers only the
documented routes Tidegate calls, with the documented shapes, and it checks every request the way
the real API would reject it: the auth header each host wants, the API version header GitHub
wants, the JSON body keys and status words each endpoint accepts, page sizes. Anything else is
answered like the host would (404/401/422) and recorded in `problems`, which a test asserts empty.

    with git_host_server(GitHost.GITHUB, "acme/infra", token="t0ken") as host:
        host.add_pull(7, author="alice", head_sha=sha)
        ... Repository(host=GitHost.GITHUB, host_api_url=host.api_url, host_repository="acme/infra", ...)
        assert host.status_states(sha) == ["pending", "success"]
        assert len(host.comments[7]) == 1

Every account has a stable numeric id (`host.id_of("alice")`, assigned on first use), as on the
real hosts. `collaborators` holds who may push (login → permission word); `commit_accounts` maps
a commit SHA to the accounts the host matched its author and committer e-mails to (any other
commit is known, and its e-mails are claimed by no account).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from store import GitHost

API_ROOT = {GitHost.GITHUB: "/api/v3", GitHost.GITLAB: "/api/v4", GitHost.GITEA: "/api/v1"}
STATUS_WORDS = {GitHost.GITHUB: {"error", "failure", "pending", "success"},
                GitHost.GITEA: {"error", "failure", "pending", "success", "warning"},
                GitHost.GITLAB: {"pending", "running", "success", "failed", "canceled", "skipped"}}
STATUS_KEYS = {GitHost.GITHUB: {"state", "target_url", "description", "context"},
               GitHost.GITEA: {"state", "target_url", "description", "context"},
               GitHost.GITLAB: {"state", "ref", "name", "context", "target_url", "description", "coverage",
                                "pipeline_id"}}
SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Call:
    """One request as the host saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Pull:
    """A pull request (merge request) the fake host knows."""

    number: int
    author: str
    head_sha: str
    base_ref: str = "main"
    state: str = "open"
    merged: bool = False
    merge_sha: str | None = None
    fork: str | None = None
    """The head's repository (`owner/name`) when it is a fork, else the base repository."""


@dataclass
class HostReview:
    """A review in the host's own words (`APPROVED`, `CHANGES_REQUESTED`; GitLab: an approval)."""

    user: str
    state: str
    commit_sha: str


GITLAB_LEVELS = {"none": 0, "read": 20, "triage": 20, "write": 30, "maintain": 40, "admin": 50, "owner": 50}


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[["GitHostServer", re.Match[str], Call], tuple[int, Any]]


@dataclass
class GitHostServer:
    """The fake host's state, what it was asked, and what it found wrong with the asking."""

    host: GitHost
    repository: str
    token: str
    base_url: str = ""
    calls: list[Call] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    reviews: dict[int, list[HostReview]] = field(default_factory=dict)
    collaborators: dict[str, str] = field(default_factory=dict)
    """login → permission (`write`, `admin`, `read`, …): who the host says may push."""
    commit_accounts: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """sha → (author login, committer login) as the host matched the commit's e-mails."""
    accounts: dict[str, int] = field(default_factory=dict)
    bot: str = "tidegate-bot"
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return self.base_url + API_ROOT[self.host]

    def id_of(self, login: str) -> int:
        """The account's stable id (logins can be renamed; ids cannot)."""
        return self.accounts.setdefault(login, 7000 + len(self.accounts))

    def user_json(self, login: str) -> dict[str, Any]:
        key = "username" if self.host is GitHost.GITLAB else "login"
        return {key: login, "id": self.id_of(login)}

    def add_pull(self, number: int, author: str, head_sha: str, **fields: Any) -> Pull:
        self.pulls[number] = Pull(number, author, head_sha, **fields)
        return self.pulls[number]

    def add_review(self, number: int, user: str, state: str, commit_sha: str) -> None:
        self.reviews.setdefault(number, []).append(HostReview(user, state, commit_sha))

    def add_collaborator(self, login: str, permission: str = "write") -> int:
        self.collaborators[login] = permission
        return self.id_of(login)

    def add_comment(self, number: int, body: str, user: str = "someone") -> int:
        return self._store_comment(number, body, user)["id"]  # type: ignore[no-any-return]

    def status_states(self, sha: str) -> list[str]:
        return [status["state"] for status in self.statuses.get(sha, [])]

    def comment_bodies(self, number: int) -> list[str]:
        return [comment["body"] for comment in self.comments.get(number, {}).values()]

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [call for call in self.calls if call.method == method and re.search(pattern, call.path)]

    # -- request handling -----------------------------------------------------------------------

    def handle(self, call: Call) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(call)
            try:
                self._check_auth(call)
                root = API_ROOT[self.host]
                if not call.path.startswith(root + "/"):
                    raise Refusal(404, f"{call.method} {call.path}: not under {root}")
                path = call.path[len(root):]
                for method, pattern, handler in ROUTES[self.host]:
                    match = re.fullmatch(pattern.replace("{repo}", re.escape(self._repo_path())), path)
                    if match and method == call.method:
                        return handler(self, match, call)
                raise Refusal(404, f"{call.method} {call.path}: no such route in the {self.host.value} API")
            except Refusal as refusal:
                self.problems.append(f"{refusal.status} {refusal}")
                return refusal.status, {"message": str(refusal)}

    def _repo_path(self) -> str:
        if self.host is GitHost.GITLAB:
            return "/projects/" + quote(self.repository, safe="")
        return "/repos/" + self.repository

    def _check_auth(self, call: Call) -> None:
        headers = call.headers
        if self.host is GitHost.GITHUB:
            if headers.get("authorization") not in (f"Bearer {self.token}", f"token {self.token}"):
                raise Refusal(401, "Bad credentials")
            if "application/vnd.github+json" not in headers.get("accept", ""):
                raise Refusal(415, "Accept should be application/vnd.github+json")
            if headers.get("x-github-api-version") != "2022-11-28":
                raise Refusal(400, "X-GitHub-Api-Version must be 2022-11-28")
            if not headers.get("user-agent"):
                raise Refusal(403, "Request forbidden by administrative rules: a User-Agent header is required")
        elif self.host is GitHost.GITLAB:
            if headers.get("private-token") != self.token and headers.get("authorization") != f"Bearer {self.token}":
                raise Refusal(401, "401 Unauthorized")
        elif headers.get("authorization") != f"token {self.token}":
            raise Refusal(401, "token is required")
        if call.method in ("POST", "PATCH", "PUT") and "application/json" not in headers.get("content-type", ""):
            raise Refusal(415, "bodies are JSON")

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _store_comment(self, number: int, body: str, user: str) -> dict[str, Any]:
        comment_id = self._new_id()
        comment: dict[str, Any] = {"id": comment_id, "body": body, "user": user}
        self.comments.setdefault(number, {})[comment_id] = comment
        return comment

    def _pull(self, match: re.Match[str]) -> Pull:
        pull = self.pulls.get(int(match["number"]))
        if pull is None:
            raise Refusal(404, f"no pull request {match['number']}")
        return pull


def _body(call: Call, required: set[str], allowed: set[str]) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise Refusal(400, "Problems parsing JSON")
    missing, unknown = required - set(call.body), set(call.body) - allowed
    if missing or unknown:
        raise Refusal(422, f"invalid body: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return call.body


def _paged(call: Call, items: list[Any]) -> tuple[int, Any]:
    try:
        per_page = int(call.query.get("per_page", ["30"])[0])
        page = int(call.query.get("page", ["1"])[0])
    except ValueError as error:
        raise Refusal(400, "per_page and page are integers") from error
    if not 1 <= per_page <= 100 or page < 1:
        raise Refusal(422, "per_page must be 1..100 and page >= 1")
    return 200, items[(page - 1) * per_page: page * per_page]


# -- GitHub and Gitea (the same shapes where Tidegate is concerned) ----------------------------------

def _create_status(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    if not SHA.match(match["sha"]):
        raise Refusal(422, "sha must be a full commit SHA")
    key = "name" if server.host is GitHost.GITLAB else "context"
    body = _body(call, {"state"}, STATUS_KEYS[server.host])
    if body["state"] not in STATUS_WORDS[server.host]:
        raise Refusal(422 if server.host is not GitHost.GITLAB else 400, f"state {body['state']!r} is not valid")
    if server.host is GitHost.GITHUB and len(str(body.get("description") or "")) > 140:
        raise Refusal(422, "description is longer than 140 characters")
    status = {"id": server._new_id(), "state": body["state"], "description": body.get("description"),
              "target_url": body.get("target_url"), key: body.get(key, "default")}
    server.statuses.setdefault(match["sha"], []).append(status)
    return 201, status


def _comment_json(server: GitHostServer, comment: dict[str, Any]) -> dict[str, Any]:
    if server.host is GitHost.GITLAB:
        return {"id": comment["id"], "body": comment["body"], "author": {"username": comment["user"]},
                "system": False}
    return {"id": comment["id"], "body": comment["body"], "user": {"login": comment["user"]},
            "html_url": f"{server.base_url}/c/{comment['id']}"}


def _list_comments(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    number = int(match["number"])
    if number not in server.pulls:
        raise Refusal(404, f"no pull request {number}")
    return _paged(call, [_comment_json(server, c) for c in server.comments.get(number, {}).values()])


def _create_comment(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    number = int(match["number"])
    if number not in server.pulls:
        raise Refusal(404, f"no pull request {number}")
    body = _body(call, {"body"}, {"body"})
    return 201, _comment_json(server, server._store_comment(number, str(body["body"]), server.bot))


def _edit_comment(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    body = _body(call, {"body"}, {"body"})
    comment_id = int(match["id"])
    for number, comments in server.comments.items():
        if comment_id in comments and ("number" not in match.groupdict() or int(match["number"]) == number):
            comments[comment_id]["body"] = str(body["body"])
            return 200, _comment_json(server, comments[comment_id])
    return 404, {"message": "Not Found"}


def _get_pull(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    pull = server._pull(match)
    if server.host is GitHost.GITLAB:
        return 200, {"iid": pull.number, "author": server.user_json(pull.author), "sha": pull.head_sha,
                     "target_branch": pull.base_ref, "source_branch": "feature",
                     "source_project_id": 99 if pull.fork else 15, "target_project_id": 15,
                     "state": "merged" if pull.merged else ("opened" if pull.state == "open" else pull.state),
                     "merge_commit_sha": pull.merge_sha, "squash_commit_sha": None}
    state = "closed" if pull.merged else pull.state
    return 200, {"number": pull.number, "user": server.user_json(pull.author), "state": state,
                 "merged": pull.merged, "merge_commit_sha": pull.merge_sha,
                 "head": {"sha": pull.head_sha, "ref": "feature",
                          "repo": {"full_name": pull.fork or server.repository}},
                 "base": {"ref": pull.base_ref, "sha": "0" * 40, "repo": {"full_name": server.repository}}}


def _list_reviews(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    pull = server._pull(match)
    reviews = [{"id": index + 1, "user": server.user_json(review.user), "state": review.state,
                "commit_id": review.commit_sha,
                **({"stale": review.commit_sha != pull.head_sha, "dismissed": False}
                   if server.host is GitHost.GITEA else {})}
               for index, review in enumerate(server.reviews.get(pull.number, []))]
    return _paged(call, reviews)


def _approvals(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    pull = server._pull(match)
    approved = [{"user": server.user_json(review.user)} for review in server.reviews.get(pull.number, [])
                if review.state == "APPROVED"]
    return 200, {"iid": pull.number, "approved": bool(approved), "approved_by": approved}


def _permission(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    """GitHub's and Gitea's collaborator permission: `none` for an account that is no collaborator."""
    login = match["user"]
    permission = server.collaborators.get(login, "none")
    words = {"admin", "write", "read", "none"} if server.host is GitHost.GITHUB else \
        {"owner", "admin", "write", "read", "none"}
    permission = {"maintain": "write", "triage": "read"}.get(permission, permission)  # legacy field: fewer words
    assert permission in words, permission
    return 200, {"permission": permission, "role_name": server.collaborators.get(login, "none"),
                 "user": server.user_json(login)}


def _member(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    """GitLab's project member (inherited included); 404 for an account that is none (not a problem)."""
    login = next((name for name, number in server.accounts.items() if str(number) == match["id"]), None)
    if login is None or login not in server.collaborators:
        return 404, {"message": "404 Not found"}
    return 200, {**server.user_json(login), "state": "active",
                 "access_level": GITLAB_LEVELS[server.collaborators[login]]}


def _commit(server: GitHostServer, match: re.Match[str], call: Call) -> tuple[int, Any]:
    if not SHA.match(match["sha"]):
        raise Refusal(422, f"No commit found for SHA: {match['sha']}")
    author, committer = server.commit_accounts.get(match["sha"], (None, None))
    return 200, {"sha": match["sha"], "author": server.user_json(author) if author else None,
                 "committer": server.user_json(committer) if committer else None}


_SHA_PART = r"(?P<sha>[^/]+)"
_N = r"(?P<number>\d+)"
_GITHUB_LIKE: list[tuple[str, str, Handler]] = [
    ("POST", "{repo}/statuses/" + _SHA_PART, _create_status),
    ("GET", "{repo}/issues/" + _N + "/comments", _list_comments),
    ("POST", "{repo}/issues/" + _N + "/comments", _create_comment),
    ("PATCH", r"{repo}/issues/comments/(?P<id>\d+)", _edit_comment),
    ("GET", "{repo}/pulls/" + _N, _get_pull),
    ("GET", "{repo}/pulls/" + _N + "/reviews", _list_reviews),
    ("GET", r"{repo}/collaborators/(?P<user>[^/]+)/permission", _permission),
]
ROUTES: dict[GitHost, list[tuple[str, str, Handler]]] = {
    GitHost.GITHUB: [*_GITHUB_LIKE, ("GET", "{repo}/commits/" + _SHA_PART, _commit)],
    GitHost.GITEA: [*_GITHUB_LIKE, ("GET", "{repo}/git/commits/" + _SHA_PART, _commit)],
    GitHost.GITLAB: [
        ("POST", "{repo}/statuses/" + _SHA_PART, _create_status),
        ("GET", "{repo}/merge_requests/" + _N + "/notes", _list_comments),
        ("POST", "{repo}/merge_requests/" + _N + "/notes", _create_comment),
        ("PUT", "{repo}/merge_requests/" + _N + r"/notes/(?P<id>\d+)", _edit_comment),
        ("GET", "{repo}/merge_requests/" + _N, _get_pull),
        ("GET", "{repo}/merge_requests/" + _N + "/approvals", _approvals),
        ("GET", r"{repo}/members/all/(?P<id>\d+)", _member),
    ],
}


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
            body = raw.decode("utf-8", "replace")
        call = Call(self.command, parts.path, parse_qs(parts.query),
                    {name.lower(): value for name, value in self.headers.items()}, body)
        status, payload = self.server.fake.handle(call)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: GitHostServer


@contextmanager
def git_host_server(host: GitHost, repository: str = "acme/infra",
                    token: str = "host-token") -> Iterator[GitHostServer]:
    """A running fake of `host`'s REST API for `repository`, on a free loopback port."""
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = GitHostServer(host, repository, token, base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, name=f"fake-{host.value}", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
