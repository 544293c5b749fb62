"""What a signed delivery says about who touched which commits, kept for the approval decision.

Git names and e-mails are whatever a committer typed; a signed webhook is the host's word. A push
names its sender and the commits it brought; a pull request names its author by stable id, and
its head (and, once merged, its merge commit). `reconciler.approvals` refuses every account these
name for the commits of the range it judges. Recorded in the delivery's own transaction, so a
refused or failed delivery leaves nothing behind and an accepted one cannot lose them.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from reconciler import authorship
from reconciler.hosts import HostUser
from webhooks.events import EventKind, WebhookEvent


def remember(session: Session, event: WebhookEvent, repository_ids: Iterable[int]) -> None:
    """Record the push sender of each pushed commit and the PR author of a PR's head and merge commit."""
    pr = event.pull_request
    for repository_id in repository_ids:
        if event.kind is EventKind.PUSH:
            authorship.record(session, repository_id, event.host, event.commits, authorship.PUSH_SENDER,
                              event.sender)
        if pr is not None and pr.author_id and event.kind in (EventKind.PREVIEW, EventKind.MERGED):
            authorship.record(session, repository_id, event.host, [pr.head_sha, pr.merge_sha or ""],
                              authorship.PR_AUTHOR, HostUser(login=pr.author, id=pr.author_id))
