"""Label and field selectors on lists, and `limit`/`continue` paging."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kube import KubeSandbox

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def labelled(api: Any, m: Any) -> None:
    api.post(CONFIGMAPS, m.configmap("a", labels={"app": "web", "tier": "front"}))
    api.post(CONFIGMAPS, m.configmap("b", labels={"app": "api", "tier": "back"}))
    api.post(CONFIGMAPS, m.configmap("c", labels={"app": "db"}))
    api.post(CONFIGMAPS, m.configmap("d"))


@pytest.mark.parametrize(("selector", "names"), [
    ("app=web", ["a"]),
    ("app==web", ["a"]),
    ("app!=web", ["b", "c", "d"]),
    ("app in (web,api)", ["a", "b"]),
    ("app notin (web, api)", ["c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("app,tier=back", ["b"]),
], ids=["equals", "double-equals", "not-equals", "in", "notin", "exists", "not-exists", "and"])
def test_label_selectors_filter_lists(api: Any, labelled: None, selector: str, names: list[str]) -> None:
    items = api.get(CONFIGMAPS, params={"labelSelector": selector}).json()["items"]
    assert [i["metadata"]["name"] for i in items] == names


@pytest.mark.parametrize(("selector", "names"), [
    ("metadata.name=b", ["b"]),
    ("metadata.name!=b", ["a", "c", "d"]),
    ("metadata.namespace=default,metadata.name!=a", ["b", "c", "d"]),
], ids=["name", "not-name", "namespace-and-name"])
def test_field_selectors_filter_lists(api: Any, labelled: None, selector: str, names: list[str]) -> None:
    items = api.get(CONFIGMAPS, params={"fieldSelector": selector}).json()["items"]
    assert [i["metadata"]["name"] for i in items] == names


def test_paging_with_limit_and_continue_returns_every_item_once(api: Any, labelled: None) -> None:
    first = api.get(CONFIGMAPS, params={"limit": 3}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b", "c"]
    assert first["metadata"]["remainingItemCount"] == 1
    second = api.get(CONFIGMAPS, params={"limit": 3, "continue": first["metadata"]["continue"]}).json()
    assert [i["metadata"]["name"] for i in second["items"]] == ["d"]
    assert "continue" not in second["metadata"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_a_continue_token_older_than_the_compacted_history_is_expired(kube: KubeSandbox, api: Any,
                                                                      labelled: None, m: Any) -> None:
    first = api.get(CONFIGMAPS, params={"limit": 1}).json()
    api.post(CONFIGMAPS, m.configmap("e"))
    kube.compact()
    answer = api.get(CONFIGMAPS, params={"limit": 1, "continue": first["metadata"]["continue"]})
    assert answer.status_code == 410
    assert answer.json()["reason"] == "Expired"
