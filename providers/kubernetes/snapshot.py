"""The live objects of one environment, read with one label-selected LIST per kind.

Plan, apply, observe and the health wait read the cluster through a `Snapshot` instead of one GET
per object: for each kind of the desired set (and of the previous inventory) one LIST across all
namespaces selected by the environment's tracking labels (`labels.selector`); where the
credentials may not list cluster-wide (403), one LIST per namespace instead. A snapshot of 5,010
objects is six requests, not 5,010.

A snapshot only holds objects that carry the environment's labels. An object absent from it may
still exist unlabelled (created by hand, or before Tidegate managed it), so `get` answers
`UNSEEN` for it, not None: the caller GETs it to know. Kinds the API does not serve are simply
empty (their objects are pending on a CRD of this sync or are reported by the caller).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from providers.kubernetes.client import KubeClient, KubeError, PermissionDenied, UnknownKind
from providers.kubernetes.ordering import ObjectRef, ref_of

Key = tuple[str, str, str, str]
"""An object's (group, kind, namespace, name), as `ObjectRef.key`."""


class Unseen(Enum):
    """The answer for an object the snapshot does not hold (it may exist without our labels)."""

    UNSEEN = "unseen"


UNSEEN = Unseen.UNSEEN


@dataclass
class Snapshot:
    """Live objects by key, and how many requests reading them took."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0

    def get(self, ref: ObjectRef) -> dict[str, Any] | Unseen:
        return self.objects.get(ref.key, UNSEEN)

    def update(self, body: Mapping[str, Any]) -> None:
        """Record what a write answered (the object as it is now)."""
        self.objects[ref_of(body).key] = dict(body)


def read(client: KubeClient, kinds: Iterable[tuple[str, str]], label_selector: str,
         namespaces: Iterable[str] = ()) -> Snapshot:
    """LIST each (apiVersion, kind) once, cluster-wide, label-selected; per namespace on 403."""
    snapshot = Snapshot()
    wanted_namespaces = sorted({n for n in namespaces if n})
    for api_version, kind in sorted(set(kinds)):
        try:
            namespaced = client.namespaced(api_version, kind)
        except UnknownKind:
            continue
        try:
            items = client.list(api_version, kind, None, label_selector=label_selector)
            snapshot.requests += 1
        except PermissionDenied:
            if not namespaced:
                raise
            items = []
            for namespace in wanted_namespaces:
                try:
                    items += client.list(api_version, kind, namespace, label_selector=label_selector)
                except KubeError as error:
                    if error.status != 404:
                        raise
                snapshot.requests += 1
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            snapshot.objects[ref_of(item).key] = item
    return snapshot
