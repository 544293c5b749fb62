"""Replay protection: each delivery id, and each signed body, is accepted once per host.

A captured, correctly signed delivery can be sent again by anyone who saw it; hosts also redeliver
on timeouts. The first delivery with an id inserts a `WebhookDelivery` row; the unique constraint
(host, delivery_id) makes the second one, even from a concurrent request, a replay. Delivery ids
are not signed, so the row also keeps the digest of what the signature covers: the same signed
bytes under a new id within `REPLAY_WINDOW` are a replay too (unique per host as well, so two
copies racing each other cannot both pass). Rows are written only for deliveries
whose signature was verified (and in the transaction that queues their work), so a forged or
unsigned copy sent first never makes the genuine delivery look like a replay.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store import GitHost, WebhookDelivery, utcnow

MAX_ID = 255
REPLAY_WINDOW = timedelta(hours=24)
"""How long an accepted body is remembered: far longer than a generic delivery's 5-minute clock skew,
and long enough that GitHub/GitLab/Gitea bodies (which carry no signed time) cannot be replayed the
same day under a new delivery id."""


def delivery_id(header: str | None, body: bytes) -> str:
    """The host's delivery id; a hash of the body when the host sends none (or an absurd one)."""
    value = (header or "").strip()
    if not value or len(value) > MAX_ID or not value.isprintable():
        return "sha256:" + hashlib.sha256(body).hexdigest()
    return value


def digest(signed: bytes) -> str:
    """SHA-256 of the bytes a delivery's signature covers."""
    return hashlib.sha256(signed).hexdigest()


def first_time(session: Session, host: GitHost, delivery: str, repository_id: int | None, event: str,
               action: str, body_digest: str | None = None) -> bool:
    """Record the delivery; False when its id, or its signed body within the window, was seen before."""
    seen = select(WebhookDelivery.id).where(WebhookDelivery.host == host, WebhookDelivery.delivery_id == delivery)
    if session.scalars(seen).first() is not None:
        return False
    if body_digest is not None:
        same_body = session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.host == host, WebhookDelivery.body_digest == body_digest)).first()
        if same_body is not None and same_body.received_at >= utcnow() - REPLAY_WINDOW:
            return False
        if same_body is not None:  # remembered long enough: the unique (host, body_digest) slot is freed
            same_body.body_digest = None
            session.flush()
    try:
        with session.begin_nested():
            session.add(WebhookDelivery(host=host, delivery_id=delivery, repository_id=repository_id,
                                        event=event[:64], action=action[:64], body_digest=body_digest))
    except IntegrityError:
        return False
    return True
