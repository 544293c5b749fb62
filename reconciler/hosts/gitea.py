"""Gitea's REST API (/api/v1, as Forgejo also serves it): statuses, PR comments, pulls, reviews.

Paths follow the Gitea swagger: `POST /repos/{owner}/{repo}/statuses/{sha}`, `GET|POST
/repos/{owner}/{repo}/issues/{index}/comments`, `PATCH /repos/{owner}/{repo}/issues/comments/{id}`,
`GET /repos/{owner}/{repo}/pulls/{index}` and `.../pulls/{index}/reviews`,
`GET /repos/{owner}/{repo}/collaborators/{collaborator}/permission` and `GET
/repos/{owner}/{repo}/git/commits/{sha}` (its `author`/`committer` are accounts or null).
Authentication is the `Authorization: token …` header. A stale or dismissed review never counts
as an approval.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from reconciler.hosts.client import Api, find_marked, host_user, login, marked, user_id
from reconciler.hosts.models import CommitAccounts, CommitStatus, HostUser, PullRequest, Review, ReviewState

WRITERS = frozenset({"owner", "admin", "write"})
_REVIEW_STATES = {"APPROVED": ReviewState.APPROVED, "REQUEST_CHANGES": ReviewState.CHANGES_REQUESTED,
                  "COMMENT": ReviewState.COMMENTED, "PENDING": ReviewState.PENDING,
                  "REQUEST_REVIEW": ReviewState.PENDING}


class GiteaClient:
    """`GitHostClient` for a Gitea (or Forgejo) server; `api_url` ends in `/api/v1`."""

    def __init__(self, api_url: str, repository: str, token: str, transport: httpx.BaseTransport | None = None):
        owner, _, name = repository.partition("/")
        self.prefix = f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.api = Api(api_url, {"Authorization": f"token {token}", "Accept": "application/json",
                                 "User-Agent": "tidegate"}, transport)

    def set_status(self, sha: str, status: CommitStatus) -> None:
        body = {"state": status.state.value, "description": status.description[:140], "context": status.context}
        if status.target_url:
            body["target_url"] = status.target_url
        self.api.call("POST", f"{self.prefix}/statuses/{sha}", json=body)

    def upsert_comment(self, number: int, body: str, comment_id: str | None = None) -> str:
        text = marked(body)
        for known in (comment_id, None):
            found = known or find_marked(self.api.pages(f"{self.prefix}/issues/{number}/comments"))
            if found is None:
                break
            edited = self.api.call("PATCH", f"{self.prefix}/issues/comments/{found}", json={"body": text},
                                   missing_ok=True)
            if edited is not None:
                return str(edited["id"])
        created = self.api.call("POST", f"{self.prefix}/issues/{number}/comments", json={"body": text})
        return str(created["id"])

    def pull_request(self, number: int) -> PullRequest:
        data = self.api.call("GET", f"{self.prefix}/pulls/{number}")
        merged = bool(data.get("merged"))
        return PullRequest(number=number, author=login(data.get("user")), author_id=user_id(data.get("user")),
                           head_sha=str(data["head"]["sha"]),
                           base_ref=str(data["base"]["ref"]), merged=merged,
                           state="merged" if merged else str(data.get("state") or "open"),
                           merge_sha=data.get("merge_commit_sha") if merged else None)

    def reviews(self, number: int) -> list[Review]:
        found: list[Review] = []
        for item in self.api.pages(f"{self.prefix}/pulls/{number}/reviews"):
            state = _REVIEW_STATES.get(str(item.get("state")), ReviewState.COMMENTED)
            if item.get("dismissed") or item.get("stale"):
                state = ReviewState.DISMISSED
            found.append(Review(user=login(item.get("user")), state=state, commit_sha=item.get("commit_id"),
                                user_id=user_id(item.get("user"))))
        return found

    def can_push(self, user: HostUser) -> bool:
        if not user.login:
            return False
        data = self.api.call("GET", f"{self.prefix}/collaborators/{quote(user.login, safe='')}/permission",
                             missing_ok=True)
        if not isinstance(data, dict):
            return False
        same = user_id(data.get("user")) in ("", user.id) or not user.id
        return same and str(data.get("permission")) in WRITERS

    def commit_accounts(self, sha: str) -> CommitAccounts:
        data = self.api.call("GET", f"{self.prefix}/git/commits/{quote(sha, safe='')}")
        return CommitAccounts(author=host_user(data.get("author")), committer=host_user(data.get("committer")))
