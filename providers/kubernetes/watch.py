"""Live drift: watches on the kinds we manage feed a drift event as soon as a managed object changes.

One watch per (apiVersion, kind, namespace) of the managed set, each on its own daemon thread,
label-selected so the API server sends only managed objects (`KubernetesStage.watch` selects by the
tracking labels of `labels.py`; an object that loses them leaves the selection, which arrives as a
DELETED event — "look now" too): list for a baseline, then watch from its resourceVersion with bookmarks. A
MODIFIED event whose normalised object (the same `diff.normalise` as plan and drift) differs from the
baseline, or a DELETED event, becomes a `DriftEvent`; changes written by our own field manager are
not drift. A watch that ends is resumed from the last resourceVersion; `410 Gone` (history
compacted) relists and compares the whole set against the baseline (resync), so a change made while
disconnected is still reported. The consumer confirms with `KubernetesStage.observe` (the exact
diff); this module only says "look now", within moments instead of at the next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import watch as kube_watch

from providers.kubernetes.client import FIELD_MANAGER, KubeClient, KubeError, as_kube_error
from providers.kubernetes.diff import IgnoreRule, changed_paths, normalise
from providers.kubernetes.ordering import ObjectRef, ref_of
from providers.stage import LiveChange

DriftEvent = LiveChange
"""A managed object changed out of band (the stage contract's LiveChange)."""


def _written_by_us(obj: Mapping[str, Any]) -> bool:
    """Whether the latest write other than status (by managedFields time) was only our field manager's.

    Times have second resolution: when another manager wrote in the same second, it is drift.
    """
    entries = [e for e in ((obj.get("metadata") or {}).get("managedFields") or [])
               if isinstance(e, Mapping) and e.get("subresource") != "status"]
    if not entries:
        return False
    latest = max(str(e.get("time") or "") for e in entries)
    return {str(e.get("manager")) for e in entries if str(e.get("time") or "") == latest} == {FIELD_MANAGER}


class LiveWatcher:
    """Watch the managed objects (desired bodies with namespaces injected) and call `on_event`."""

    def __init__(self, client: KubeClient, objects: Sequence[Mapping[str, Any]],
                 on_event: Callable[[DriftEvent], None], *, rules: Sequence[IgnoreRule] = (),
                 label_selector: str | None = None, watch_timeout: int = 60, backoff: float = 0.1,
                 close_client: bool = False) -> None:
        self.client = client
        self.close_client = close_client
        self.on_event = on_event
        self.rules = list(rules)
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.resyncs = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watchers: list[Any] = []
        self._lock = threading.Lock()
        self._baseline: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}
        self._groups: dict[tuple[str, str, str], set[tuple[str, str, str, str]]] = {}
        for body in objects:
            ref = ref_of(body)
            # label-selected: one watch per kind across namespaces (the selector keeps it to ours)
            where = "" if label_selector else ref.namespace
            self._groups.setdefault((str(body.get("apiVersion", "")), ref.kind, where), set()).add(ref.key)

    def start(self) -> LiveWatcher:
        ready = [self._spawn(api_version, kind, namespace, keys)
                 for (api_version, kind, namespace), keys in self._groups.items()]
        for started in ready:
            started.wait(timeout=10)
        return self

    def _spawn(self, api_version: str, kind: str, namespace: str,
               keys: set[tuple[str, str, str, str]]) -> threading.Event:
        started = threading.Event()
        thread = threading.Thread(target=self._run, args=(api_version, kind, namespace, keys, started),
                                  name=f"tidegate-watch-{kind}-{namespace or 'all'}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return started

    def _per_namespace(self, api_version: str, kind: str, keys: set[tuple[str, str, str, str]],
                       started: threading.Event) -> None:
        """A cluster-wide watch the credentials may not hold (403): one per namespace instead."""
        by_namespace: dict[str, set[tuple[str, str, str, str]]] = {}
        for key in keys:
            by_namespace.setdefault(key[2], set()).add(key)
        ready = [self._spawn(api_version, kind, namespace, own) for namespace, own in by_namespace.items()]
        for event in ready:
            event.wait(timeout=10)
        started.set()

    def stop(self) -> None:
        self._stop.set()
        for watcher in list(self._watchers):
            watcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.close_client:
            self.client.close()

    def __enter__(self) -> LiveWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one watch loop ----------------------------------------------------------------------------

    def _list(self, resource: Any, namespace: str) -> tuple[dict[tuple[str, str, str, str], dict[str, Any]], str]:
        result = self.client.call(resource.get, namespace=namespace or None, label_selector=self.label_selector,
                                  serializer=lambda _client, data: data, what=f"list {resource.kind}")
        raw = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        items = {ref_of(item).key: item for item in raw.get("items") or []
                 if isinstance(item, dict)}
        for key, item in items.items():  # list items carry no kind/apiVersion
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.group_version)
            items[key] = item
        fixed = {ref_of(item).key: item for item in items.values()}
        return fixed, str((raw.get("metadata") or {}).get("resourceVersion") or "")

    def _see(self, key: tuple[str, str, str, str], obj: dict[str, Any] | None, reason: str) -> None:
        ref = ObjectRef(*key)
        current = normalise(obj, self.rules) if obj is not None else None
        with self._lock:
            before = self._baseline.get(key)
            self._baseline[key] = current
        if before == current:
            return
        if obj is not None and reason != "resync" and _written_by_us(obj):
            return
        if current is None:
            self.on_event(DriftEvent(ref.address, "deleted" if reason != "resync" else "resync"))
            return
        fields = tuple(changed_paths(current, before)) if before is not None else ("/",)
        self.on_event(DriftEvent(ref.address, reason, fields))

    def _run(self, api_version: str, kind: str, namespace: str, keys: set[tuple[str, str, str, str]],
             started: threading.Event) -> None:
        resource_version = ""
        first = True
        while not self._stop.is_set():
            try:
                resource = self.client.resource(api_version, kind)
                if not resource_version:
                    live, resource_version = self._list(resource, namespace)
                    for key in keys:
                        if first:
                            with self._lock:
                                self._baseline[key] = normalise(live.get(key), self.rules)
                        else:
                            self._see(key, live.get(key), "resync")
                    if not first:
                        self.resyncs += 1
                    first = False
                    started.set()
                watcher = kube_watch.Watch()  # type: ignore[no-untyped-call]
                self._watchers.append(watcher)
                try:
                    for event in self.client.dynamic.watch(
                            resource, namespace=namespace or None, label_selector=self.label_selector,
                            resource_version=resource_version, timeout=self.watch_timeout, watcher=watcher,
                            allow_watch_bookmarks=True):
                        if self._stop.is_set():
                            break
                        raw = event.get("raw_object") or {}
                        version = (raw.get("metadata") or {}).get("resourceVersion")
                        if version:
                            resource_version = str(version)
                        if event.get("type") not in ("MODIFIED", "DELETED", "ADDED"):
                            continue
                        key = ref_of({**raw, "apiVersion": raw.get("apiVersion") or api_version,
                                      "kind": raw.get("kind") or kind}).key
                        if key in keys:
                            self._see(key, None if event["type"] == "DELETED" else dict(raw),
                                      "deleted" if event["type"] == "DELETED" else "modified")
                finally:
                    self._watchers.remove(watcher)
            except Exception as error:
                failure = error if isinstance(error, KubeError) else as_kube_error(error, f"watch {kind}")
                if failure.status == 403 and not namespace and first and any(key[2] for key in keys):
                    self._per_namespace(api_version, kind, keys, started)
                    return
                if failure.status == 410:
                    resource_version = ""  # history compacted: relist and resync
                    continue
                self.errors.append(str(failure))
                started.set()
                self._stop.wait(self.backoff)
