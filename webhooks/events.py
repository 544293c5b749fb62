"""What a delivery means, whichever host sent it: push, PR to preview, PR merged, review, or nothing.

Each host names its events and fields differently (`X-GitHub-Event: pull_request` with action
`synchronize`, GitLab's `Merge Request Hook` with action `update` and an `oldrev`, Gitea's
`synchronized`); `parse` folds them into one `WebhookEvent`, so what happens next (poll, preview,
approvals recount) is decided in one place. Payloads are hostile until their signature is checked
and odd even after: every field is read defensively, and a known event without the fields it
needs raises `MalformedEvent` (a 400), never an exception that would become a 5xx.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from store import GitHost

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
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
    head_sha: str = ""
    base_ref: str = ""
    base_sha: str | None = None
    merged: bool = False


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
        return WebhookEvent(**base, kind=EventKind.PUSH, ref=ref)
    pr = payload.get("pull_request")
    if event in ("pull_request", "pull_request_review", *GITEA_APPROVED) and not isinstance(pr, dict):
        raise MalformedEvent(f"a {event} event without a pull_request object")
    if event == "pull_request":
        merged = get(pr, "merged") is True
        details = _pull_request(get(pr, "number") or payload.get("number"), title=text(get(pr, "title")),
                                author=text(get(pr, "user", "login")), head_sha=text(get(pr, "head", "sha")),
                                base_ref=text(get(pr, "base", "ref")), base_sha=text(get(pr, "base", "sha")) or None,
                                merged=merged)
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
        return WebhookEvent(**base, kind=EventKind.PUSH, ref=ref)
    if event != "Merge Request Hook":
        return _ignored(base, f"event {event!r} needs nothing")
    if not isinstance(attributes, dict):
        raise MalformedEvent("a merge request event without object_attributes")
    details = _pull_request(attributes.get("iid"), title=text(attributes.get("title")),
                            author=text(get(payload, "user", "username")),
                            head_sha=text(get(attributes, "last_commit", "id")),
                            base_ref=text(attributes.get("target_branch")),
                            merged=action == "merge" or attributes.get("state") == "merged")
    if action in ("open", "reopen") or (action == "update" and "oldrev" in attributes):
        return WebhookEvent(**base, kind=EventKind.PREVIEW, pull_request=details)
    if action == "merge":
        return WebhookEvent(**base, kind=EventKind.MERGED, pull_request=details, ref=details.base_ref)
    if action in ("approved", "approval"):
        return WebhookEvent(**base, kind=EventKind.REVIEW, pull_request=details)
    return _ignored(base, f"merge request action {action!r} needs nothing")


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
