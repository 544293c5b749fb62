"""Random and mutated deliveries (bodies, headers, events; signed and not) never get a 5xx."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import GitHost
from tests.webhooks.conftest import DEFAULT_SECRET, Hooks
from tests.webhooks.deliveries import comment, pull_request, push, review, sign
from webhooks.receiver import HEADERS

EVENTS = ["push", "pull_request", "pull_request_review", "pull_request_approved", "ping", "Push Hook",
          "Merge Request Hook", "issue_comment", "Note Hook", "star", ""]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                               max_size=4), max_leaves=20)


def _samples(host: GitHost) -> list[tuple[str, dict[str, Any]]]:
    samples = [push(host)]
    if host is not GitHost.GENERIC:
        samples += [pull_request(host, "opened"), pull_request(host, "closed", merged=True), review(host),
                    comment(host, "/tidegate preview")]
    return samples


@st.composite
def mutated(draw: st.DrawFn, host: GitHost) -> tuple[str, Any]:
    """A real payload of the host with some fields replaced by random JSON (or dropped)."""
    event, payload = draw(st.sampled_from(_samples(host)))
    payload = json.loads(json.dumps(payload))
    for _ in range(draw(st.integers(1, 4))):
        node = payload
        path = draw(st.lists(st.sampled_from(["repository", "project", "pull_request", "object_attributes", "head",
                                              "sha", "number", "iid", "ref", "full_name", "clone_url", "user",
                                              "base", "last_commit", "id", "action", "merged", "review", "state",
                                              "comment", "issue", "body", "note", "merge_request", "sender",
                                              "commits", "after"]),
                             min_size=1, max_size=3))
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if draw(st.booleans()):
                node[path[-1]] = draw(JSON)
            else:
                node.pop(path[-1], None)
    return draw(st.sampled_from([event, *EVENTS])), payload


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    host = draw(st.sampled_from(list(GitHost)))
    kind = draw(st.sampled_from(["signed-mutation", "signed-random-json", "random-bytes", "random-headers"]))
    if kind == "signed-mutation":
        event, payload = draw(mutated(host))
        delivery = sign(host, event, payload, DEFAULT_SECRET)
    elif kind == "signed-random-json":
        delivery = sign(host, draw(st.sampled_from(EVENTS)), draw(JSON), DEFAULT_SECRET)
    else:
        body = draw(st.binary(max_size=512)) if kind == "random-bytes" else json.dumps(draw(JSON)).encode()
        delivery = sign(host, draw(st.sampled_from(EVENTS)), None, DEFAULT_SECRET, body=body)
    names = HEADERS[host]
    headers = dict(delivery.headers)
    for name in draw(st.lists(st.sampled_from([names.event, names.delivery, names.signature, "Content-Type"]),
                              max_size=3)):
        key = next((k for k in headers if k.lower() == name.lower()), name)
        if draw(st.booleans()):
            headers[key] = draw(HEADER_TEXT)
        else:
            headers.pop(key, None)
    return delivery.path, headers, delivery.body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery=deliveries())
def test_no_delivery_however_mangled_gets_a_server_error(shared_hooks: Hooks,
                                                          delivery: tuple[str, dict[str, str], bytes]) -> None:
    path, headers, body = delivery

    response = shared_hooks.client.post(path, content=body, headers=headers)

    assert response.status_code < 500, (response.status_code, response.text)
    assert response.status_code in (200, 202, 400, 401, 413)
