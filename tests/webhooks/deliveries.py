"""Webhook deliveries as each host sends them: documented header names and payload shapes, signed.

Shapes follow the hosts' webhook documentation (GitHub `push`, `pull_request`,
`pull_request_review`, `issue_comment`; GitLab `Push Hook`, `Merge Request Hook`, `Note Hook`;
Gitea `push`, `pull_request`, `pull_request_approved`, `issue_comment`), trimmed to the fields
Tidegate reads plus a few it must ignore.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from store import GitHost

CLONE_URL = "https://git.example.test/acme/infra.git"
FULL_NAME = "acme/infra"
HEAD = "1" * 40
BASE = "2" * 40
MERGE = "3" * 40
ALICE_ID, BOB_ID, OCTOCAT_ID = 583231, 583232, 1


@dataclass
class Delivery:
    """One HTTP request a host would make: where, which headers, which bytes."""

    host: GitHost
    headers: dict[str, str]
    body: bytes
    payload: Any = field(default=None)

    @property
    def path(self) -> str:
        return f"/webhooks/{self.host.value}"


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(host: GitHost, event: str, payload: Any, secret: str, delivery: str | None = None,
         body: bytes | None = None, timestamp: int | None = None) -> Delivery:
    """The request `host` makes for `event`, signed with `secret` the way that host signs.

    The generic receiver's signature covers `<X-Tidegate-Timestamp>.<body>`; `timestamp` defaults to now."""
    raw = body if body is not None else json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    if host is GitHost.GITHUB:
        headers |= {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": "sha256=" + _hex(secret, raw), "User-Agent": "GitHub-Hookshot/abc"}
    elif host is GitHost.GITLAB:
        headers |= {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": secret}
    elif host is GitHost.GITEA:
        headers |= {"X-Gitea-Event": event, "X-Gitea-Delivery": delivery, "X-Gitea-Signature": _hex(secret, raw)}
    else:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers |= {"X-Tidegate-Event": event, "X-Tidegate-Delivery": delivery, "X-Tidegate-Timestamp": stamp,
                    "X-Tidegate-Signature": "sha256=" + _hex(secret, stamp.encode() + b"." + raw)}
    return Delivery(host, headers, raw, payload)


def _github_repository(url: str) -> dict[str, Any]:
    return {"id": 1296269, "full_name": FULL_NAME, "clone_url": url, "ssh_url": "git@git.example.test:acme/infra.git",
            "html_url": "https://git.example.test/acme/infra", "default_branch": "main"}


def push(host: GitHost, url: str = CLONE_URL, ref: str = "refs/heads/main") -> tuple[str, dict[str, Any]]:
    """(event name, payload) of a push to `ref`."""
    if host is GitHost.GITLAB:
        return "Push Hook", {"object_kind": "push", "ref": ref, "before": BASE, "after": HEAD, "project_id": 15,
                             "user_id": OCTOCAT_ID, "user_username": "octocat",
                             "project": {"id": 15, "path_with_namespace": FULL_NAME, "git_http_url": url,
                                         "git_ssh_url": "git@git.example.test:acme/infra.git",
                                         "web_url": "https://git.example.test/acme/infra"},
                             "commits": [{"id": HEAD, "added": [], "modified": ["apps/web/base/deployment.yaml"]}]}
    if host is GitHost.GENERIC:
        return "push", {"repository": {"url": url, "name": FULL_NAME}, "ref": ref, "after": HEAD}
    return "push", {"ref": ref, "before": BASE, "after": HEAD, "repository": _github_repository(url),
                    "pusher": {"name": "octocat"}, "sender": {"login": "octocat", "id": OCTOCAT_ID},
                    "commits": [{"id": BASE.replace("2", "4")}, {"id": HEAD}]}


def pull_request(host: GitHost, action: str, url: str = CLONE_URL, *, merged: bool = False, number: int = 7,
                 base_ref: str = "main", fork: bool = False) -> tuple[str, dict[str, Any]]:
    """(event name, payload) of a PR event by alice; `action` in the host's own words."""
    if host is GitHost.GITLAB:
        attributes = {"iid": number, "title": "Scale web", "action": action, "state": "merged" if merged else "opened",
                      "source_branch": "feature", "target_branch": base_ref, "last_commit": {"id": HEAD},
                      "author_id": ALICE_ID, "source_project_id": 99 if fork else 15, "target_project_id": 15,
                      "merge_commit_sha": MERGE if merged else None}
        if action == "update":
            attributes["oldrev"] = BASE
        return "Merge Request Hook", {"object_kind": "merge_request", "user": {"username": "alice", "id": ALICE_ID},
                                      "project": {"id": 15, "path_with_namespace": FULL_NAME, "git_http_url": url},
                                      "object_attributes": attributes}
    head_repo = {"full_name": "alice/infra" if fork else FULL_NAME}
    pr = {"number": number, "title": "Scale web", "user": {"login": "alice", "id": ALICE_ID}, "merged": merged,
          "head": {"sha": HEAD, "ref": "feature", "repo": head_repo},
          "base": {"sha": BASE, "ref": base_ref, "repo": {"full_name": FULL_NAME}},
          "merge_commit_sha": MERGE if merged else None}
    return "pull_request", {"action": action, "number": number, "pull_request": pr,
                            "repository": _github_repository(url), "sender": {"login": "alice", "id": ALICE_ID}}


def comment(host: GitHost, body: str, url: str = CLONE_URL, *, on_pull_request: bool = True,
            action: str = "created") -> tuple[str, dict[str, Any]]:
    """(event name, payload) of bob's comment on PR (MR) #7; GitLab's note names the MR's head."""
    if host is GitHost.GITLAB:
        return "Note Hook", {"object_kind": "note", "user": {"username": "bob", "id": BOB_ID},
                             "project": {"id": 15, "path_with_namespace": FULL_NAME, "git_http_url": url},
                             "object_attributes": {"note": body, "noteable_type": "MergeRequest" if on_pull_request
                                                   else "Issue", "action": "create" if action == "created" else action},
                             "merge_request": {"iid": 7, "last_commit": {"id": HEAD}}}
    issue: dict[str, Any] = {"number": 7, "title": "Scale web"}
    if on_pull_request:
        issue["pull_request"] = {"url": "https://git.example.test/api/pulls/7"}
    payload: dict[str, Any] = {"action": action, "issue": issue, "repository": _github_repository(url),
               "comment": {"id": 5, "body": body, "user": {"login": "bob", "id": BOB_ID}},
               "sender": {"login": "bob", "id": BOB_ID}}
    if host is GitHost.GITEA:
        payload["is_pull"] = on_pull_request
    return "issue_comment", payload


def review(host: GitHost, url: str = CLONE_URL, state: str = "approved") -> tuple[str, dict[str, Any]]:
    """(event name, payload) of an approving review (GitLab: an MR approval)."""
    if host is GitHost.GITLAB:
        event, payload = pull_request(host, "approved", url)
        return event, payload
    _, payload = pull_request(host, "submitted", url)
    payload["review"] = {"id": 80, "user": {"login": "bob"}, "state": state, "commit_id": HEAD}
    if host is GitHost.GITEA:
        return "pull_request_approved", {**payload, "action": "reviewed",
                                                "review": {"type": "pull_request_review_approved", "content": ""}}
    return "pull_request_review", payload


PREVIEW_ACTIONS = {GitHost.GITHUB: ("opened", "synchronize", "reopened"),
                   GitHost.GITEA: ("opened", "synchronized", "reopened"),
                   GitHost.GITLAB: ("open", "update", "reopen")}
MERGE_ACTION = {GitHost.GITHUB: "closed", GitHost.GITEA: "closed", GitHost.GITLAB: "merge"}
