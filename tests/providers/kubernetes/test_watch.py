"""Live drift: an out-of-band change arrives as a drift event within moments, even across a 410."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from providers.kubernetes.client import KubeClient
from providers.kubernetes.watch import DriftEvent, LiveWatcher
from sandbox.kube import KubeSandbox

DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
}
CM: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                      "data": {"k": "v"}}


def next_event(events: queue.Queue[DriftEvent], timeout: float = 5.0) -> DriftEvent:
    return events.get(timeout=timeout)


def test_hand_edit_is_a_drift_event_within_two_seconds_and_our_own_apply_is_not(
        kube: KubeSandbox, kubeconfig: Path) -> None:
    client = KubeClient.connect(path=kubeconfig)
    client.apply(DEPLOY)
    client.apply(CM)
    events: queue.Queue[DriftEvent] = queue.Queue()
    with LiveWatcher(KubeClient.connect(path=kubeconfig), [DEPLOY, CM], events.put):
        time.sleep(0.3)  # controllers settle status (not drift)
        client.apply({**CM, "data": {"k": "ours"}})  # our own field manager: not drift
        changed_at = time.monotonic()
        client.resource("apps/v1", "Deployment").patch(name="web", namespace="default",
                                                       body={"spec": {"replicas": 4}},
                                                       content_type="application/merge-patch+json")
        event = next_event(events)
        assert time.monotonic() - changed_at < 2.0
        assert (event.address, event.reason, event.fields) == ("apps/Deployment/default/web", "modified",
                                                               ("/spec/replicas",))
        client.delete("v1", "ConfigMap", "c", "default")
        assert next_event(events).address == "/ConfigMap/default/c"
        assert events.empty()


def test_a_change_made_while_disconnected_is_found_by_the_resync_after_410(
        kube: KubeSandbox, kubeconfig: Path) -> None:
    client = KubeClient.connect(path=kubeconfig)
    client.apply(CM)
    events: queue.Queue[DriftEvent] = queue.Queue()
    watcher = LiveWatcher(KubeClient.connect(path=kubeconfig), [CM], events.put, backoff=0.05)
    with watcher:
        kube.inject(status=503, verb="watch")
        kube.drop_watches()
        time.sleep(0.2)
        client.resource("v1", "ConfigMap").patch(name="c", namespace="default", body={"data": {"k": "theirs"}},
                                                 content_type="application/merge-patch+json")
        kube.compact()
        kube.clear_faults()
        event = next_event(events)
        assert (event.address, event.reason, event.fields) == ("/ConfigMap/default/c", "resync", ("/data/k",))
        assert watcher.resyncs >= 1
