"""What a delivery means, whichever host sent it: push, PR to preview, PR merged, review, go-ahead, or nothing.

Each host names its events and fields differently (`X-GitHub-Event: pull_request` with action
`synchronize`, GitLab's `Merge Request Hook` with action `update` and an `oldrev`, Gitea's
`synchronized`); `parse` folds them into one `WebhookEvent`, so what happens next (poll, preview,
approvals recount, a member's `/tidegate preview` go-ahead) is decided in one place. Events also
carry the accounts the host vouches for (the push's sender, the PR's author, by stable id), which
are remembered per commit so that nobody approves a change they pushed or proposed. Payloads are
hostile until their signature is checked and odd even after: every field is read defensively, and
a known event without the fields it needs raises `MalformedEvent` (a 400), never an exception that
would become a 5xx.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from reconciler.hosts import HostUser
from store import GitHost

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_NO_COMMIT = "0" * 40
GO_AHEAD = re.compile(r"^[ \t]*/tidegate[ \t]+preview(?:[ \t]+([0-9a-fA-F]{7,64}))?[ \t]*$", re.MULTILINE)
"""A member's go-ahead for a waiting preview: a line `/tidegate preview [SHA]` in a PR comment."""
MAX_COMMITS = 4096
GITEA_APPROVED = ("pull_request_approved", "pull_request_review_approved")
"""Gitea's `X-Gitea-Event` for an approving review, and its `X-Gitea-Event-Type` spelling."""


class EventKind(StrEnum):
    """What Tidegate does about an event."""

    PUSH = "push"
    """Poll the repository now (the poll filters by changed paths)."""
    PREVIEW = "preview"
    """A PR was opened, reopened or got new commits: preview its head."""
    MERGED = "merged"
    """A PR was merged: the normal flow (poll) takes over."""
    REVIEW = "review"
    """A review was submitted: recount PR review approvals."""
    GO_AHEAD = "go_ahead"
    """A PR comment `/tidegate preview [SHA]`: a member lets a waiting head be planned."""
    PING = "ping"
    IGNORED = "ignored"


class MalformedEvent(ValueError):
    """A known event whose payload lacks what that event always carries."""


class PullRequestEvent(BaseModel):
    """The PR fields a preview or a recount needs."""

    model_config = ConfigDict(frozen=True)

    number: int
    title: str = ""
    author: str = ""
    author_id: str = ""
    head_sha: str = ""
    base_ref: str = ""
    base_sha: str | None = None
    merged: bool = False
    merge_sha: str | None = None
    fork: bool = True
    """The head lives in another repository (unknown counts as a fork: it is never trusted blindly)."""


class CommentEvent(BaseModel):
    """A `/tidegate preview [SHA]` comment on a PR: who gave the go-ahead, and for which head."""

    model_config = ConfigDict(frozen=True)

    number: int
    commenter: HostUser
    sha: str | None = None


class WebhookEvent(BaseModel):
    """One delivery, host-neutral."""

    model_config = ConfigDict(frozen=True)

    host: GitHost
    event: str
    action: str = ""
    kind: EventKind
    urls: tuple[str, ...] = ()
    """Clone/web URLs of the repository the event is about (matched against registered repos)."""
    names: tuple[str, ...] = ()
    """The host's names for it: `owner/name`, GitLab's path and numeric id."""
    ref: str | None = None
    pull_request: PullRequestEvent | None = None
    comment: CommentEvent | None = None
    sender: HostUser | None = None
    """The account that caused the event, as the host vouches (a push's pusher)."""
    commits: tuple[str, ...] = ()
    """The commits a push brought (its `commits` and its new head)."""
    reason: str = ""


def get(value: Any, *keys: str) -> Any:
    """`value[k1][k2]…`, or None as soon as a level is not a mapping or lacks the key."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse(host: GitHost, event: str, payload: Any) -> WebhookEvent:
    """The host-neutral meaning of one delivery (payload already parsed from JSON)."""
    parser = {GitHost.GITHUB: _github, GitHost.GITLAB: _gitlab, GitHost.GITEA: _gitea,
              GitHost.GENERIC: _generic}[host]
    return parser(event, payload if isinstance(payload, dict) else {})


def _strings(*values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool)
                               and str(v)))


def _repo_github_like(payload: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    repo = payload.get("repository")
    urls = _strings(get(repo, "clone_url"), get(repo, "ssh_url"), get(repo, "git_url"), get(repo, "html_url"))
    return urls, _strings(get(repo, "full_name"))


def _account(user: Any, login_key: str = "login") -> HostUser | None:
    """An account object of the payload (`{login, id}`), or None without a numeric id."""
    number = get(user, "id")
    if not isinstance(number, int) or isinstance(number, bool):
        return None
    return HostUser(login=text(get(user, login_key))[:255], id=str(number))


def _pushed(payload: dict[str, Any]) -> tuple[str, ...]:
    commits = payload.get("commits")
    ids = [get(commit, "id") for commit in commits[:MAX_COMMITS]] if isinstance(commits, list) else []
    ids.append(payload.get("after"))
    return tuple(dict.fromkeys(str(sha) for sha in ids if isinstance(sha, str) and _SHA.match(sha)
                               and sha != _NO_COMMIT))


def _command(body: Any) -> tuple[bool, str | None]:
    """(whether a comment is a go-ahead, the SHA it names if any)."""
    found = GO_AHEAD.search(text(body)[:65536])
    if found is None:
        return False, None
    return True, found.group(1).lower() if found.group(1) else None


def _id(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def _base(host: GitHost, event: str, action: str, urls: tuple[str, ...], names: tuple[str, ...]) -> dict[str, Any]:
    return {"host": host, "event": event[:64], "action": action[:64], "urls": urls, "names": names}


def _ignored(base: dict[str, Any], reason: str) -> WebhookEvent:
    return WebhookEvent(**base, kind=EventKind.IGNORED, reason=reason)


def _pull_request(number: Any, **fields: Any) -> PullRequestEvent:
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
        raise MalformedEvent("the payload names no pull request number")
    if not _SHA.match(str(fields.get("head_sha") or "")):
        raise MalformedEvent("the payload names no head commit SHA")
    if fields.get("base_sha") is not None and not _SHA.match(str(fields["base_sha"])):
        fields["base_sha"] = None
    return PullRequestEvent(number=number, **{key: value for key, value in fields.items() if value is not None})


def _github_like(host: GitHost, event: str, payload: dict[str, Any], sync_action: str) -> WebhookEvent:
    action = text(payload.get("action"))
    urls, names = _repo_github_like(payload)
    base = _base(host, event, action, urls, names)
    if not urls and not names and event not in ("ping",):
        raise MalformedEvent("the payload names no repository")
    if event == "ping":
        return WebhookEvent(**base, kind=EventKind.PING)
    if event == "push":
        ref = text(payload.get("ref"))
        if not ref:
            raise MalformedEvent("a push without a ref")
        return WebhookEvent(**base, kind=EventKind.PUSH, ref=ref, sender=_account(payload.get("sender")),
                            commits=_pushed(payload))
    if event == "issue_comment":
        return _github_comment(base, payload)
    pr = payload.get("pull_request")
    if event in ("pull_request", "pull_request_review", *GITEA_APPROVED) and not isinstance(pr, dict):
        raise MalformedEvent(f"a {event} event without a pull_request object")
    if event == "pull_request":
        merged = get(pr, "merged") is True
        merge_sha = text(get(pr, "merge_commit_sha")) if merged else ""
        details = _pull_request(get(pr, "number") or payload.get("number"), title=text(get(pr, "title")),
                                author=text(get(pr, "user", "login")), author_id=_id(get(pr, "user", "id")),
                                head_sha=text(get(pr, "head", "sha")),
                                base_ref=text(get(pr, "base", "ref")), base_sha=text(get(pr, "base", "sha")) or None,
                                merged=merged, merge_sha=merge_sha if _SHA.match(merge_sha) else None,
                                fork=_github_fork(pr))
        if action in ("opened", "reopened", sync_action):
            return WebhookEvent(**base, kind=EventKind.PREVIEW, pull_request=details)
        if action == "closed" and merged:
            return WebhookEvent(**base, kind=EventKind.MERGED, pull_request=details, ref=details.base_ref)
        return _ignored(base, f"pull request action {action!r} needs nothing")
    approved = (event == "pull_request_review" and action == "submitted"
                and text(get(payload, "review", "state")).lower() == "approved") \
        or event in GITEA_APPROVED
    if approved:
        details = _pull_request(get(pr, "number") or payload.get("number"), author=text(get(pr, "user", "login")),
                                head_sha=text(get(pr, "head", "sha")), base_ref=text(get(pr, "base", "ref")),
                                merged=get(pr, "merged") is True)
        return WebhookEvent(**base, kind=EventKind.REVIEW, pull_request=details)
    return _ignored(base, f"event {event!r} ({action or 'no action'}) needs nothing")


def _github_fork(pr: Any) -> bool:
    """Whether the head repository differs from the base one (a deleted fork's head repo is null)."""
    head, base = get(pr, "head", "repo", "full_name"), get(pr, "base", "repo", "full_name")
    if isinstance(head, str) and isinstance(base, str) and head and base:
        return head.lower() != base.lower()
    head_id, base_id = get(pr, "head", "repo_id"), get(pr, "base", "repo_id")  # Gitea also says it this way
    return not (isinstance(head_id, int) and head_id == base_id)


def _github_comment(base: dict[str, Any], payload: dict[str, Any]) -> WebhookEvent:
    """GitHub's and Gitea's `issue_comment`: a go-ahead when created on a PR by an account with an id."""
    issue = payload.get("issue")
    is_pull = isinstance(get(issue, "pull_request"), dict) or payload.get("is_pull") is True
    wanted, sha = _command(get(payload, "comment", "body"))
    if base["action"] != "created" or not is_pull or not wanted:
        return _ignored(base, "not a /tidegate preview comment on a pull request")
    number, commenter = get(issue, "number"), _account(get(payload, "comment", "user"))
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0 or commenter is None:
        raise MalformedEvent("a comment without its pull request number or its author")
    return WebhookEvent(**base, kind=EventKind.GO_AHEAD, comment=CommentEvent(number=number, commenter=commenter,
                                                                               sha=sha))


def _github(event: str, payload: dict[str, Any]) -> WebhookEvent:
    return _github_like(GitHost.GITHUB, event, payload, "synchronize")


def _gitea(event: str, payload: dict[str, Any]) -> WebhookEvent:
    return _github_like(GitHost.GITEA, event, payload, "synchronized")


def _gitlab(event: str, payload: dict[str, Any]) -> WebhookEvent:
    project = payload.get("project")
    urls = _strings(get(project, "git_http_url"), get(project, "git_ssh_url"), get(project, "web_url"),
                    get(project, "http_url"), get(project, "url"))
    names = _strings(get(project, "path_with_namespace"), get(project, "id"), payload.get("project_id"))
    attributes = payload.get("object_attributes")
    action = text(get(attributes, "action"))
    base = _base(GitHost.GITLAB, event, action, urls, names)
    if event in ("Push Hook", "Merge Request Hook") and not urls and not names:
        raise MalformedEvent("the payload names no project")
    if event == "Push Hook":
        ref = text(payload.get("ref"))
        if not ref:
            raise MalformedEvent("a push without a ref")
        user_id = _id(payload.get("user_id"))
        sender = HostUser(login=text(payload.get("user_username"))[:255], id=user_id) if user_id else None
        return WebhookEvent(**base, kind=EventKind.PUSH, ref=ref, sender=sender, commits=_pushed(payload))
    if event == "Note Hook":
        return _gitlab_note(base, payload, attributes)
    if event != "Merge Request Hook":
        return _ignored(base, f"event {event!r} needs nothing")
    if not isinstance(attributes, dict):
        raise MalformedEvent("a merge request event without object_attributes")
    merged = action == "merge" or attributes.get("state") == "merged"
    merge_sha = text(attributes.get("merge_commit_sha")) if merged else ""
    source, target = attributes.get("source_project_id"), attributes.get("target_project_id")
    details = _pull_request(attributes.get("iid"), title=text(attributes.get("title")),
                            author=text(get(payload, "user", "username")) if action in ("open", "reopen", "update")
                            else "", author_id=_id(attributes.get("author_id")),
                            head_sha=text(get(attributes, "last_commit", "id")),
                            base_ref=text(attributes.get("target_branch")), merged=merged,
                            merge_sha=merge_sha if _SHA.match(merge_sha) else None,
                            fork=not (isinstance(source, int) and source == target))
    if action in ("open", "reopen") or (action == "update" and "oldrev" in attributes):
        return WebhookEvent(**base, kind=EventKind.PREVIEW, pull_request=details)
    if action == "merge":
        return WebhookEvent(**base, kind=EventKind.MERGED, pull_request=details, ref=details.base_ref)
    if action in ("approved", "approval"):
        return WebhookEvent(**base, kind=EventKind.REVIEW, pull_request=details)
    return _ignored(base, f"merge request action {action!r} needs nothing")


def _gitlab_note(base: dict[str, Any], payload: dict[str, Any], attributes: Any) -> WebhookEvent:
    """A merge request note: a go-ahead for the head it names, or the head the MR had when written."""
    wanted, sha = _command(get(attributes, "note"))
    if get(attributes, "noteable_type") != "MergeRequest" or not wanted or base["action"] not in ("", "create"):
        return _ignored(base, "not a /tidegate preview note on a merge request")
    number, commenter = get(payload, "merge_request", "iid"), _account(payload.get("user"), "username")
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0 or commenter is None:
        raise MalformedEvent("a note without its merge request iid or its author")
    head = text(get(payload, "merge_request", "last_commit", "id"))
    return WebhookEvent(**base, kind=EventKind.GO_AHEAD, comment=CommentEvent(
        number=number, commenter=commenter, sha=sha or (head if _SHA.match(head) else None)))


def _generic(event: str, payload: dict[str, Any]) -> WebhookEvent:
    repo = payload.get("repository")
    urls = _strings(get(repo, "url"), get(repo, "clone_url"))
    names = _strings(get(repo, "name"), get(repo, "full_name"))
    base = _base(GitHost.GENERIC, event, "", urls, names)
    if event == "ping":
        return WebhookEvent(**base, kind=EventKind.PING)
    if event != "push":
        return _ignored(base, f"event {event!r} needs nothing (the generic receiver knows push and ping)")
    if not urls and not names:
        raise MalformedEvent("the payload names no repository (repository.url or repository.name)")
    return WebhookEvent(**base, kind=EventKind.PUSH, ref=text(payload.get("ref")) or None)
