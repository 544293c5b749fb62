"""What the reconciler reads from and writes to a Git host, independent of which host it is.

The three REST APIs spell the same facts differently (GitHub's `APPROVED` review, GitLab's
`approved_by` list, Gitea's review `state`); the clients translate into these models so previews
and review approvals never branch on the host.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from store import PreviewStatus

STATUS_CONTEXT = "tidegate/preview"
"""The commit status name every host shows next to the PR's other checks."""

COMMENT_MARKER = "<!-- tidegate:preview -->"
"""Hidden first line of Tidegate's one PR comment: how a lost comment id is found again."""


class ReviewState(StrEnum):
    """A review's verdict; only `approved` ever counts as an approval."""

    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"
    DISMISSED = "dismissed"
    PENDING = "pending"


class HostUser(BaseModel):
    """An account on the Git host: its login (renamable) and its stable numeric id (what counts)."""

    model_config = ConfigDict(frozen=True)

    login: str = ""
    id: str = ""


class CommitAccounts(BaseModel):
    """A commit's author and committer as the host resolved them to accounts (None: no account)."""

    model_config = ConfigDict(frozen=True)

    author: HostUser | None = None
    committer: HostUser | None = None


class PullRequest(BaseModel):
    """A PR (GitLab: merge request) as the host describes it now."""

    model_config = ConfigDict(frozen=True)

    number: int
    author: str
    author_id: str = ""
    head_sha: str
    base_ref: str
    state: str
    """open, closed or merged."""
    merged: bool = False
    merge_sha: str | None = None
    """The commit the merge put on the base branch (merge, squash or the head itself)."""


class Review(BaseModel):
    """One review: who, what they decided, and on which commit (None when the host does not say)."""

    model_config = ConfigDict(frozen=True)

    user: str
    state: ReviewState
    commit_sha: str | None = None
    user_id: str = ""
    """The reviewer's stable id on the host: how reviewers are matched to Tidegate users."""


class CommitStatus(BaseModel):
    """A commit status as posted: the word, a short description and the link to the preview page."""

    model_config = ConfigDict(frozen=True)

    state: PreviewStatus
    description: str
    target_url: str | None = None
    context: str = STATUS_CONTEXT


class HostError(RuntimeError):
    """The host refused or failed a call; says which call and the HTTP status, never the token."""
