"""Watch streams: initial state, resume from a resourceVersion, selectors, bookmarks, timeouts and 410 Expired."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from sandbox.kube import KubeSandbox

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def events(response: requests.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line:
            yield json.loads(line)


def test_a_watch_without_resource_version_starts_with_the_current_state(api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("a"))
    with api.get(CONFIGMAPS, params={"watch": "true"}, stream=True) as stream:
        stream_events = events(stream)
        first = next(stream_events)
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "a"
        assert first["object"]["kind"] == "ConfigMap" and first["object"]["apiVersion"] == "v1"
        api.post(CONFIGMAPS, m.configmap("b"))
        second = next(stream_events)
        assert (second["type"], second["object"]["metadata"]["name"]) == ("ADDED", "b")


def test_resume_from_a_resource_version_replays_every_later_change_in_order(api: Any, m: Any) -> None:
    rv = api.post(CONFIGMAPS, m.configmap("a")).json()["metadata"]["resourceVersion"]
    api.patch(f"{CONFIGMAPS}/a", {"data": {"k": "2"}})
    api.post(CONFIGMAPS, m.configmap("b"))
    api.delete(f"{CONFIGMAPS}/a")
    with api.get(CONFIGMAPS, params={"watch": "1", "resourceVersion": rv}, stream=True) as stream:
        seen = []
        for event in events(stream):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 3:
                break
    assert seen == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_a_label_selected_watch_sees_objects_enter_and_leave_the_selection(api: Any, m: Any) -> None:
    rv = api.post(CONFIGMAPS, m.configmap("a", labels={"managed": "yes"})).json()["metadata"]["resourceVersion"]
    api.post(CONFIGMAPS, m.configmap("other"))
    api.patch(f"{CONFIGMAPS}/a", {"metadata": {"labels": {"managed": None}}})
    api.patch(f"{CONFIGMAPS}/other", {"metadata": {"labels": {"managed": "yes"}}})
    params = {"watch": "true", "resourceVersion": rv, "labelSelector": "managed=yes"}
    with api.get(CONFIGMAPS, params=params, stream=True) as stream:
        seen = []
        for event in events(stream):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                break
    assert seen == [("DELETED", "a"), ("ADDED", "other")]


def test_timeout_seconds_ends_the_stream_and_bookmarks_carry_the_latest_resource_version(api: Any, m: Any) -> None:
    rv = api.post(CONFIGMAPS, m.configmap("a")).json()["metadata"]["resourceVersion"]
    started = time.monotonic()
    answer = api.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                                         "timeoutSeconds": "1"})
    assert 0.9 < time.monotonic() - started < 3
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert lines and all(e["type"] == "BOOKMARK" for e in lines)
    assert lines[0]["object"] == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}


def test_resuming_from_a_compacted_resource_version_gets_an_expired_error_event(kube: KubeSandbox, api: Any,
                                                                                 m: Any) -> None:
    rv = api.post(CONFIGMAPS, m.configmap("a")).json()["metadata"]["resourceVersion"]
    api.post(CONFIGMAPS, m.configmap("b"))
    kube.compact()
    answer = api.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": rv})
    assert answer.status_code == 200
    (event,) = [json.loads(line) for line in answer.text.splitlines()]
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure", "Expired",
                                                                                    410)
    assert status["message"].startswith(f"too old resource version: {rv} (")


def test_a_bounded_history_expires_old_resource_versions_by_itself(client_for: Any, m: Any) -> None:
    with KubeSandbox(history_size=3) as small:
        client = client_for(small)
        rv = client.post(CONFIGMAPS, m.configmap("a")).json()["metadata"]["resourceVersion"]
        for value in range(5):
            client.patch(f"{CONFIGMAPS}/a", {"data": {"k": str(value)}})
        answer = client.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": rv})
        assert json.loads(answer.text.splitlines()[0])["object"]["code"] == 410


def test_send_initial_events_ends_the_initial_list_with_an_annotated_bookmark(api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("a"))
    params = {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
              "allowWatchBookmarks": "true"}
    with api.get(CONFIGMAPS, params=params, stream=True) as stream:
        stream_events = events(stream)
        assert next(stream_events)["type"] == "ADDED"
        bookmark = next(stream_events)
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_dropped_watches_end_so_that_clients_reconnect(kube: KubeSandbox, api: Any) -> None:
    ended = threading.Event()

    def watch() -> None:
        api.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": "1"})
        ended.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while kube.drop_watches() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended.wait(5)


def test_a_watch_whose_client_went_away_is_closed(kube: KubeSandbox, api: Any) -> None:
    with api.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": "1"}, stream=True) as stream:
        assert stream.status_code == 200
        assert kube.call(lambda: len(kube.state.store.open_watchers())) == 1
    deadline = time.monotonic() + 5
    while kube.call(lambda: len(kube.state.store.open_watchers())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kube.call(lambda: len(kube.state.store.open_watchers())) == 0


def test_a_watch_across_all_namespaces_sees_every_namespace(api: Any, m: Any) -> None:
    api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    rv = api.get("/api/v1/configmaps").json()["metadata"]["resourceVersion"]
    api.post(CONFIGMAPS, m.configmap("here"))
    api.post("/api/v1/namespaces/team/configmaps", m.configmap("there"))
    with api.get("/api/v1/configmaps", params={"watch": "true", "resourceVersion": rv}, stream=True) as stream:
        stream_events = events(stream)
        seen = [(e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
                for e in (next(stream_events), next(stream_events))]
    assert seen == [("default", "here"), ("team", "there")]
