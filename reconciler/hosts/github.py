"""GitHub's REST API (v2022-11-28): commit statuses, issue comments on PRs, pulls and their reviews.

Paths and bodies follow docs.github.com/en/rest: `POST /repos/{owner}/{repo}/statuses/{sha}`,
`GET|POST /repos/{owner}/{repo}/issues/{number}/comments`, `PATCH
/repos/{owner}/{repo}/issues/comments/{id}`, `GET /repos/{owner}/{repo}/pulls/{number}` and
`.../pulls/{number}/reviews`, `GET /repos/{owner}/{repo}/collaborators/{username}/permission` and
`GET /repos/{owner}/{repo}/commits/{ref}` (whose `author`/`committer` are the accounts GitHub
matched to the commit's e-mails, or null). A PR's conversation comments are issue comments on GitHub.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from reconciler.hosts.client import Api, find_marked, host_user, login, marked, user_id
from reconciler.hosts.models import CommitAccounts, CommitStatus, HostUser, PullRequest, Review, ReviewState

API_VERSION = "2022-11-28"
WRITERS = frozenset({"admin", "maintain", "write"})
"""Permissions that can push: the accounts trusted to have their pull requests previewed."""
_REVIEW_STATES = {"APPROVED": ReviewState.APPROVED, "CHANGES_REQUESTED": ReviewState.CHANGES_REQUESTED,
                  "COMMENTED": ReviewState.COMMENTED, "DISMISSED": ReviewState.DISMISSED,
                  "PENDING": ReviewState.PENDING}


class GitHubClient:
    """`GitHostClient` for github.com or GitHub Enterprise (`https://HOST/api/v3`)."""

    def __init__(self, api_url: str, repository: str, token: str, transport: httpx.BaseTransport | None = None):
        owner, _, name = repository.partition("/")
        self.prefix = f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.api = Api(api_url, {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                 "X-GitHub-Api-Version": API_VERSION, "User-Agent": "tidegate"}, transport)

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
        return [Review(user=login(item.get("user")), state=_REVIEW_STATES.get(str(item.get("state")),
                                                                              ReviewState.COMMENTED),
                       commit_sha=item.get("commit_id"), user_id=user_id(item.get("user")))
                for item in self.api.pages(f"{self.prefix}/pulls/{number}/reviews")]

    def can_push(self, user: HostUser) -> bool:
        if not user.login:
            return False
        data = self.api.call("GET", f"{self.prefix}/collaborators/{quote(user.login, safe='')}/permission",
                             missing_ok=True)
        if not isinstance(data, dict):
            return False
        same = user_id(data.get("user")) in ("", user.id) or not user.id  # a reused login is another account
        return same and (str(data.get("permission")) in WRITERS or str(data.get("role_name")) in WRITERS)

    def commit_accounts(self, sha: str) -> CommitAccounts:
        data = self.api.call("GET", f"{self.prefix}/commits/{quote(sha, safe='')}")
        return CommitAccounts(author=host_user(data.get("author")), committer=host_user(data.get("committer")))
