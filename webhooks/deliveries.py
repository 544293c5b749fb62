"""Replay protection: each delivery id is accepted once per host.

A captured, correctly signed delivery can be sent again by anyone who saw it; hosts also redeliver
on timeouts. The first delivery with an id inserts a `WebhookDelivery` row; the unique constraint
(host, delivery_id) makes the second one, even from a concurrent request, a replay.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store import GitHost, WebhookDelivery

MAX_ID = 255


def delivery_id(header: str | None, body: bytes) -> str:
    """The host's delivery id; a hash of the body when the host sends none (or an absurd one)."""
    value = (header or "").strip()
    if not value or len(value) > MAX_ID or not value.isprintable():
        return "sha256:" + hashlib.sha256(body).hexdigest()
    return value


def first_time(session: Session, host: GitHost, delivery: str, repository_id: int | None, event: str,
               action: str) -> bool:
    """Record the delivery; False when it was seen before (a replay)."""
    seen = select(WebhookDelivery.id).where(WebhookDelivery.host == host, WebhookDelivery.delivery_id == delivery)
    if session.scalars(seen).first() is not None:
        return False
    try:
        with session.begin_nested():
            session.add(WebhookDelivery(host=host, delivery_id=delivery, repository_id=repository_id,
                                        event=event[:64], action=action[:64]))
    except IntegrityError:
        return False
    return True
