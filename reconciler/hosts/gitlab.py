"""GitLab's REST API (v4): commit statuses, merge request notes, merge requests and approvals.

Paths follow docs.gitlab.com/api: `POST /projects/:id/statuses/:sha` (`state`, `name`,
`target_url`, `description`), `GET|POST /projects/:id/merge_requests/:iid/notes`, `PUT
/projects/:id/merge_requests/:iid/notes/:note_id`, `GET /projects/:id/merge_requests/:iid` and
`.../approvals`, and `GET /projects/:id/members/all/:user_id` (an `access_level` of 30, Developer,
or more can push). `:id` is the numeric project id or the URL-encoded `group/project` path; the
token travels in `PRIVATE-TOKEN`. GitLab's commit API names authors by e-mail only, never by
account, so `commit_accounts` resolves nothing there: pushers and MR authors still count.

GitLab's words differ from the other hosts': a status is `failed`, not `failure`, and has no
`error`; an approval is an entry of `approved_by` with no commit. GitLab resets approvals on a new
push when the project says so, so an approval is taken to be on the merge request's current head.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from reconciler.hosts.client import Api, find_marked, login, marked, user_id
from reconciler.hosts.models import CommitAccounts, CommitStatus, HostUser, PullRequest, Review, ReviewState
from store import PreviewStatus

_STATES = {PreviewStatus.PENDING: "pending", PreviewStatus.SUCCESS: "success", PreviewStatus.FAILURE: "failed",
           PreviewStatus.ERROR: "failed"}
DEVELOPER = 30
"""The lowest access level that may push to a project."""
_MR_STATES = {"opened": "open", "closed": "closed", "merged": "merged", "locked": "open"}


class GitLabClient:
    """`GitHostClient` for gitlab.com or a self-managed GitLab; `api_url` ends in `/api/v4`."""

    def __init__(self, api_url: str, project: str, token: str, transport: httpx.BaseTransport | None = None):
        self.prefix = f"projects/{quote(project, safe='')}"
        self.api = Api(api_url, {"PRIVATE-TOKEN": token, "Accept": "application/json", "User-Agent": "tidegate"},
                       transport)

    def set_status(self, sha: str, status: CommitStatus) -> None:
        body = {"state": _STATES[status.state], "name": status.context, "description": status.description[:255]}
        if status.target_url:
            body["target_url"] = status.target_url
        self.api.call("POST", f"{self.prefix}/statuses/{sha}", json=body)

    def upsert_comment(self, number: int, body: str, comment_id: str | None = None) -> str:
        text = marked(body)
        notes = f"{self.prefix}/merge_requests/{number}/notes"
        for known in (comment_id, None):
            found = known or find_marked(self.api.pages(notes))
            if found is None:
                break
            edited = self.api.call("PUT", f"{notes}/{found}", json={"body": text}, missing_ok=True)
            if edited is not None:
                return str(edited["id"])
        created = self.api.call("POST", notes, json={"body": text})
        return str(created["id"])

    def pull_request(self, number: int) -> PullRequest:
        data = self.api.call("GET", f"{self.prefix}/merge_requests/{number}")
        state = _MR_STATES.get(str(data.get("state")), "open")
        merged = state == "merged"
        merge_sha = (data.get("merge_commit_sha") or data.get("squash_commit_sha") or data.get("sha")) if merged \
            else None
        return PullRequest(number=number, author=login(data.get("author"), "username"),
                           author_id=user_id(data.get("author")), head_sha=str(data["sha"]),
                           base_ref=str(data["target_branch"]), state=state, merged=merged, merge_sha=merge_sha)

    def reviews(self, number: int) -> list[Review]:
        head = self.pull_request(number).head_sha
        data = self.api.call("GET", f"{self.prefix}/merge_requests/{number}/approvals")
        approvers = data.get("approved_by") or [] if isinstance(data, dict) else []
        return [Review(user=login(entry.get("user"), "username"), state=ReviewState.APPROVED, commit_sha=head,
                       user_id=user_id(entry.get("user")))
                for entry in approvers if isinstance(entry, dict)]

    def can_push(self, user: HostUser) -> bool:
        if not user.id.isdigit():
            return False
        data = self.api.call("GET", f"{self.prefix}/members/all/{user.id}", missing_ok=True)
        level = data.get("access_level") if isinstance(data, dict) else None
        return isinstance(level, int) and level >= DEVELOPER and str(data.get("state") or "active") == "active"

    def commit_accounts(self, sha: str) -> CommitAccounts:
        return CommitAccounts()
