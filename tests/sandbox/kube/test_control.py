"""The control endpoint: a request log to count writes, and injected faults (500, 429, latency, dropped watches)."""

from __future__ import annotations

import time
from typing import Any

import requests

from sandbox.kube import KubeSandbox

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def test_the_request_log_names_each_request_by_verb_and_resource(kube: KubeSandbox, api: Any, m: Any) -> None:
    kube.clear_requests()
    api.post(CONFIGMAPS, m.configmap("a"))
    api.get(f"{CONFIGMAPS}/a")
    api.get(CONFIGMAPS)
    api.patch(f"{CONFIGMAPS}/a?dryRun=All", {"data": {"k": "2"}})
    api.delete(f"{CONFIGMAPS}/a")
    log = kube.requests()
    assert [(r["method"], r["verb"], r["resource"], r["name"], r["code"]) for r in log] == [
        ("POST", "create", "configmaps", "", 201), ("GET", "get", "configmaps", "a", 200),
        ("GET", "list", "configmaps", "", 200), ("PATCH", "patch", "configmaps", "a", 200),
        ("DELETE", "delete", "configmaps", "a", 200)]
    assert log[3]["dry_run"] is True and log[3]["query"] == {"dryRun": "All"}
    assert [w["verb"] for w in kube.writes()] == ["create", "patch", "delete"]


def test_the_request_log_is_served_over_http_too(kube: KubeSandbox, api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("a"))
    items = api.get("/_sandbox/requests").json()["items"]
    assert any(r["verb"] == "create" and r["resource"] == "configmaps" for r in items)
    api.delete("/_sandbox/requests")
    assert kube.requests() == []


def test_an_injected_500_fails_the_matching_requests_then_stops(kube: KubeSandbox, api: Any, m: Any) -> None:
    kube.inject(status=500, verb="create", resource="configmaps", times=2)
    first, second = api.post(CONFIGMAPS, m.configmap("a")), api.post(CONFIGMAPS, m.configmap("a"))
    assert (first.status_code, second.status_code) == (500, 500)
    assert first.json()["reason"] == "InternalError"
    assert api.post(CONFIGMAPS, m.configmap("a")).status_code == 201
    assert api.get(f"{CONFIGMAPS}/a").status_code == 200


def test_an_injected_429_carries_retry_after(kube: KubeSandbox, api: Any, m: Any) -> None:
    api.post("/_sandbox/faults", {"status": 429, "retry_after": 2, "times": 1})
    answer = api.get(CONFIGMAPS)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert answer.json()["reason"] == "TooManyRequests" and answer.json()["details"]["retryAfterSeconds"] == 2
    assert api.get(CONFIGMAPS).status_code == 200


def test_injected_latency_delays_requests(kube: KubeSandbox, api: Any) -> None:
    kube.inject(latency=0.5, verb="list", times=1)
    started = time.monotonic()
    assert api.get(CONFIGMAPS).status_code == 200
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    api.get(CONFIGMAPS)
    assert time.monotonic() - started < 0.5


def test_a_fault_rule_can_end_watches_after_a_while(kube: KubeSandbox, api: Any) -> None:
    kube.inject(drop_watch_after=0.2, verb="watch")
    started = time.monotonic()
    answer = api.get(CONFIGMAPS, params={"watch": "true", "resourceVersion": "1"})
    assert answer.status_code == 200 and time.monotonic() - started < 2


def test_control_endpoint_needs_no_token_but_the_api_does(kube: KubeSandbox) -> None:
    verify = str(kube.ca_file)
    assert requests.get(f"{kube.url}/_sandbox/faults", verify=verify, timeout=5).json() == {"items": []}
    assert requests.get(f"{kube.url}{CONFIGMAPS}", verify=verify, timeout=5).status_code == 401


def test_a_request_refused_by_an_injected_fault_is_logged_with_its_real_dry_run(
        kube: KubeSandbox, api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("a"))
    kube.inject(status=500, verb="patch", times=2)
    kube.inject(status=503, verb="delete", times=1)
    kube.clear_requests()
    assert api.patch(f"{CONFIGMAPS}/a?dryRun=All", {"data": {"k": "2"}}).status_code == 500
    assert api.patch(f"{CONFIGMAPS}/a", {"data": {"k": "2"}}).status_code == 500
    assert api.delete(f"{CONFIGMAPS}/a", {"kind": "DeleteOptions", "apiVersion": "v1",
                                          "dryRun": ["All"]}).status_code == 503
    assert [(r["verb"], r["code"], r["dry_run"]) for r in kube.requests()] == [
        ("patch", 500, True), ("patch", 500, False), ("delete", 503, True)]


def test_dry_run_in_delete_options_deletes_nothing(kube: KubeSandbox, api: Any, m: Any, kubectl: Any) -> None:
    """kubectl puts dryRun in the DeleteOptions body, not in the query."""
    api.post(CONFIGMAPS, m.configmap("a"))
    assert api.delete(f"{CONFIGMAPS}/a", {"dryRun": ["All"]}).status_code == 200
    refused = api.delete(f"{CONFIGMAPS}/a", {"dryRun": ["Some"]})
    assert refused.status_code == 422 and refused.json()["message"] == (
        'DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Some"}: supported values: "All"')
    deleted = kubectl("delete", "configmap", "a", "--dry-run=server")
    assert deleted.returncode == 0 and "(server dry run)" in deleted.stdout, deleted.stderr
    assert api.get(f"{CONFIGMAPS}/a").status_code == 200
    assert [r["dry_run"] for r in kube.requests(verb="delete")] == [True, False, True]  # "Some" is refused
