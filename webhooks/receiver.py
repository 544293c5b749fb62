"""One delivery from arrival to answer: size cap, signature, replay, meaning, and what is enqueued.

The receiver never does the work itself: it answers 202 within milliseconds after handing a job to
a queue (a poll, a preview, an approvals recount). Every refusal changes nothing: a forged
signature is 401 before any row is written, an oversize body is 413 before it is read in full,
malformed JSON is 400, a replayed delivery id is 200 with nothing enqueued, and an event Tidegate
does not act on is 202 and ignored. The delivery row and the enqueue share one transaction, so a
broker failure leaves no record behind and the host's retry is not mistaken for a replay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from pydantic import BaseModel, SecretStr, ValidationError

from reconciler.hosts.approvals import RecountRequest
from reconciler.preview_tasks import PreviewQueue
from reconciler.previews import GoAheadRequest, PreviewRequest
from reconciler.runtime import Services
from store import GitHost
from webhooks import deliveries, signatures
from webhooks.events import EventKind, MalformedEvent, WebhookEvent, parse
from webhooks.identities import remember
from webhooks.registry import Candidate, candidates

log = logging.getLogger(__name__)

Job = tuple[str, Callable[[], None]]
"""A job to enqueue once the delivery is recorded: its name (for the answer) and how to send it."""

MAX_BODY = 1024 * 1024
"""Largest accepted payload (GitHub caps its own at 25 MB; config repo events are far smaller)."""


class WebhookSettings(Protocol):
    """What receivers read from the composition root's settings."""

    @property
    def webhook_secret(self) -> SecretStr | None: ...

    @property
    def public_url(self) -> str: ...


@dataclass(frozen=True)
class HeaderNames:
    """Where a host puts the event name, the delivery id and the signature."""

    event: str
    delivery: str
    signature: str


HEADERS = {
    GitHost.GITHUB: HeaderNames("x-github-event", "x-github-delivery", "x-hub-signature-256"),
    GitHost.GITLAB: HeaderNames("x-gitlab-event", "x-gitlab-event-uuid", "x-gitlab-token"),
    GitHost.GITEA: HeaderNames("x-gitea-event", "x-gitea-delivery", "x-gitea-signature"),
    GitHost.GENERIC: HeaderNames("x-tidegate-event", "x-tidegate-delivery", "x-tidegate-signature"),
}


class Answer(BaseModel):
    """The receiver's reply: HTTP status, what happened, and the jobs it enqueued."""

    status_code: int
    outcome: str
    detail: str = ""
    enqueued: list[str] = []


def refused(status_code: int, detail: str) -> Answer:
    return Answer(status_code=status_code, outcome="refused", detail=detail)


class Receiver:
    """Checks and routes deliveries for every host; `handle` is synchronous (run it off the event loop)."""

    def __init__(self, services: Services, settings: WebhookSettings, previews: PreviewQueue) -> None:
        self.services = services
        self.settings = settings
        self.previews = previews

    def handle(self, host: GitHost, headers: dict[str, str], body: bytes) -> Answer:
        names = HEADERS[host]
        signature = headers.get(names.signature)
        if not signature:
            return refused(401, f"missing {names.signature} header")
        signed = body  # what the signature covers: the generic receiver's also holds a timestamp
        if host is GitHost.GENERIC:
            stamped = signatures.stamped(headers.get(signatures.TIMESTAMP_HEADER), body)
            if isinstance(stamped, str):
                return refused(401, stamped)
            signed = stamped
        event_name = headers.get(names.event, "").strip()
        if not event_name:
            return refused(400, f"missing {names.event} header")
        try:
            event = parse(host, event_name, json.loads(body))
        except MalformedEvent as problem:
            return refused(400, str(problem))
        except (ValueError, RecursionError):
            return refused(400, "the body is not JSON")
        with self.services.database.session(write=True) as session:
            found = candidates(session, self.services.secrets, self.settings.webhook_secret, event.urls, event.names)
            if not found:
                return self._unregistered(host, signature, signed)
            verified = [c for c in found if c.secret is not None and _verified(host, c.secret, signature, signed)]
            if not verified:
                return refused(401, "the signature does not match")
            try:
                jobs, otherwise = self._jobs(event, verified)
            except ValidationError as problem:  # signed, but its fields do not make a job
                return refused(400, f"the payload does not describe a job ({problem.error_count()} problem(s))")
            delivery = deliveries.delivery_id(headers.get(names.delivery), body)
            if not deliveries.first_time(session, host, delivery, verified[0].repository_id, event.event,
                                         event.action, deliveries.digest(signed)):
                return Answer(status_code=200, outcome="replayed",
                              detail=f"delivery {delivery}, or the same signed body, was accepted before")
            remember(session, event, [c.repository_id for c in verified])
            for _, enqueue in jobs:
                enqueue()
            answer = Answer(status_code=202, outcome="accepted", enqueued=[name for name, _ in jobs]) if jobs \
                else Answer(status_code=202, outcome="ignored", detail=otherwise)
            log.info("webhook %s %s/%s delivery %s: %s %s", host.value, event.event, event.action, delivery,
                     answer.outcome, answer.enqueued or answer.detail)
            return answer

    def _unregistered(self, host: GitHost, signature: str, body: bytes) -> Answer:
        """No registered repository: a delivery signed with the default secret is ignored, others refused."""
        default = self.settings.webhook_secret
        if default is not None and default.get_secret_value() and \
                _verified(host, default.get_secret_value(), signature, body):
            return Answer(status_code=202, outcome="ignored", detail="no registered repository matches")
        return refused(401, "the signature does not match")

    def _jobs(self, event: WebhookEvent, verified: list[Candidate]) -> tuple[list[Job], str]:
        """What to enqueue for the event (nothing is sent yet), or why nothing."""
        queue, previews = self.services.queue, self.previews
        pr = event.pull_request
        if event.kind in (EventKind.PUSH, EventKind.MERGED):
            targets = [c for c in verified if event.ref in (None, "", c.branch, f"refs/heads/{c.branch}")]
            jobs: list[Job] = [(f"poll:{c.name}", partial(queue.poll, c.repository_id)) for c in targets]
            if event.kind is EventKind.MERGED and pr is not None:  # reviews given before the merge count now
                jobs += [(f"recount:{c.name}#{pr.number}", partial(previews.recount, RecountRequest(
                    repository_id=c.repository_id, number=pr.number))) for c in targets]
            return jobs, f"{event.ref} is not a tracked branch"
        if event.kind is EventKind.PREVIEW and pr is not None:
            requests = [(c, PreviewRequest(
                repository_id=c.repository_id, number=pr.number, title=pr.title[:500], author=pr.author[:255],
                author_id=pr.author_id, fork=pr.fork, head_sha=pr.head_sha, base_ref=pr.base_ref[:255] or c.branch,
                base_sha=pr.base_sha, public_url=self.settings.public_url))
                for c in verified if pr.base_ref in ("", c.branch)]
            return ([(f"preview:{c.name}#{pr.number}", partial(previews.preview, r)) for c, r in requests],
                    f"the pull request targets {pr.base_ref}, not a tracked branch")
        if event.kind is EventKind.REVIEW and pr is not None:
            return ([(f"recount:{c.name}#{pr.number}",
                      partial(previews.recount, RecountRequest(repository_id=c.repository_id, number=pr.number)))
                     for c in verified], "")
        if event.kind is EventKind.GO_AHEAD and event.comment is not None:
            comment = event.comment
            return ([(f"go-ahead:{c.name}#{comment.number}", partial(previews.go_ahead, GoAheadRequest(
                repository_id=c.repository_id, number=comment.number, commenter=comment.commenter.login or "?",
                commenter_id=comment.commenter.id, sha=comment.sha, public_url=self.settings.public_url)))
                for c in verified], "")
        return [], event.reason or event.kind.value


def _verified(host: GitHost, secret: str, signature: str, body: bytes) -> bool:
    if host is GitHost.GITLAB:
        return signatures.valid_token(secret, signature)
    if host is GitHost.GITEA:
        return signatures.valid_hex(secret, body, signature)
    return signatures.valid_prefixed(secret, body, signature)
