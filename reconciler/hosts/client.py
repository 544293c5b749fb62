"""The one interface previews and review approvals use to talk to a Git host, and its HTTP plumbing.

Each host implementation (GitHub, GitLab, Gitea) maps six verbs onto its documented REST API:
set a commit status, create-or-edit Tidegate's single PR comment, read a PR, read its reviews, ask
whether an account may push to the repository (who is trusted to have a PR previewed or to give
the go-ahead), and resolve a commit's author and committer to accounts.
The comment is found again by a hidden marker when its id is unknown (a lost database row, or a
first preview racing a second push), so a PR never collects two Tidegate comments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx

from reconciler.hosts.models import (
    COMMENT_MARKER,
    CommitAccounts,
    CommitStatus,
    HostError,
    HostUser,
    PullRequest,
    Review,
)

PAGE_SIZE = 100
MAX_PAGES = 50
TIMEOUT = 15.0


class GitHostClient(Protocol):
    """A Git host's REST API for one repository, seen through the verbs Tidegate needs."""

    def set_status(self, sha: str, status: CommitStatus) -> None: ...

    def upsert_comment(self, number: int, body: str, comment_id: str | None = None) -> str:
        """Edit the Tidegate comment (by id, else found by its marker) or create it; return its id."""
        ...

    def pull_request(self, number: int) -> PullRequest: ...

    def reviews(self, number: int) -> list[Review]: ...

    def can_push(self, user: HostUser) -> bool:
        """Whether the account has write access (or more) to the repository: a trusted member."""
        ...

    def commit_accounts(self, sha: str) -> CommitAccounts: ...


class Api:
    """A small JSON-over-HTTP helper: one base URL, fixed auth headers, paging by `page`/`per_page`."""

    def __init__(self, base_url: str, headers: Mapping[str, str], transport: httpx.BaseTransport | None = None):
        self.client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=dict(headers), timeout=TIMEOUT,
                                   transport=transport, follow_redirects=False)

    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
             missing_ok: bool = False) -> Any:
        """One request; a 404 gives None when `missing_ok`, any other failure raises HostError."""
        try:
            response = self.client.request(method, path.lstrip("/"), json=json, params=params)
        except httpx.HTTPError as error:
            raise HostError(f"{method} {path}: {type(error).__name__}") from error
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise HostError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def pages(self, path: str) -> Iterator[Any]:
        """Every item of a paged list (stops at a short page, as all three hosts page the same way)."""
        for page in range(1, MAX_PAGES + 1):
            items = self.call("GET", path, params={"per_page": PAGE_SIZE, "page": page})
            if not isinstance(items, list):
                raise HostError(f"GET {path}: expected a list")
            yield from items
            if len(items) < PAGE_SIZE:
                return


def marked(body: str) -> str:
    """The comment body with the hidden marker first (exactly once)."""
    return body if body.startswith(COMMENT_MARKER) else f"{COMMENT_MARKER}\n{body}"


def find_marked(comments: Iterator[Any], body_key: str = "body") -> str | None:
    """The id of the first comment that carries Tidegate's marker."""
    for comment in comments:
        if isinstance(comment, dict) and str(comment.get(body_key) or "").startswith(COMMENT_MARKER):
            return str(comment["id"])
    return None


def login(user: Any, key: str = "login") -> str:
    return str(user.get(key) or "") if isinstance(user, dict) else ""


def user_id(user: Any) -> str:
    """The account's numeric id as text ("" when the host gave none)."""
    value = user.get("id") if isinstance(user, dict) else None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def host_user(user: Any, key: str = "login") -> HostUser | None:
    """The account a host's user object describes, or None (a commit e-mail no account claims)."""
    if not isinstance(user, dict) or not user_id(user):
        return None
    return HostUser(login=login(user, key), id=user_id(user))
