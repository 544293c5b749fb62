"""Tidegate's tracking labels, put on every object the workloads stage applies.

The decision (as Argo CD's `app.kubernetes.io/instance` and Flux's `kustomize.toolkit.fluxcd.io/name`
and `/namespace` do): every applied object carries

    app.kubernetes.io/managed-by: tidegate
    tidegate.dev/environment: <environment>
    tidegate.dev/workload: <workload>

so that the live watcher asks the API server for exactly the managed objects (one label-selected
watch per kind and namespace) instead of every object of a kind. They are bookkeeping, not desired
state the user wrote: the normalised comparison drops them on both sides, so they never show as a
diff line or a drift field. A live object that lacks them (adopted, applied before labelling, or
unlabelled by hand) is planned as an `update` that only adds them, so the watcher sees it again.
A manifest's own value for one of these keys is replaced (a rendered chart's `managed-by: Helm`
becomes `tidegate`: Tidegate is what applies it). Prune never trusts them: ownership is the inventory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tidegate"
ENVIRONMENT_LABEL = "tidegate.dev/environment"
WORKLOAD_LABEL = "tidegate.dev/workload"
TRACKING = (MANAGED_BY, ENVIRONMENT_LABEL, WORKLOAD_LABEL)


def label_value(text: str) -> str:
    """A valid label value (lower-case DNS label, at most 50 characters) for a name."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-") or "x"


def tracking_labels(environment: str, workload: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, ENVIRONMENT_LABEL: label_value(environment), WORKLOAD_LABEL: label_value(workload)}


def with_tracking_labels(body: Mapping[str, Any], environment: str, workload: str, *,
                         copy: bool = True) -> dict[str, Any]:
    """`body` carrying the tracking labels (over any value the manifest gave them): a deep copy,
    or with `copy=False` a body the caller already owns (only its metadata is replaced)."""
    copied = deepcopy(dict(body)) if copy else dict(body)
    metadata = dict(copied.get("metadata") or {})
    metadata["labels"] = {**dict(metadata.get("labels") or {}), **tracking_labels(environment, workload)}
    copied["metadata"] = metadata
    return copied


def selector(environment: str) -> str:
    """The label selector of one environment's managed objects."""
    return f"{MANAGED_BY}={MANAGER},{ENVIRONMENT_LABEL}={label_value(environment)}"


def untracked(desired: Mapping[str, Any] | None, live: Mapping[str, Any] | None) -> list[str]:
    """Tracking labels the desired object carries with a value the live object lacks."""
    if desired is None or live is None:
        return []
    wanted = (desired.get("metadata") or {}).get("labels") or {}
    have = (live.get("metadata") or {}).get("labels") or {}
    return [key for key in TRACKING if key in wanted and have.get(key) != wanted[key]]


def drop_tracking(metadata: dict[str, Any]) -> None:
    """Remove the tracking labels from a (copied) metadata mapping, in place."""
    labels = metadata.get("labels")
    if isinstance(labels, dict):
        metadata["labels"] = {key: value for key, value in labels.items() if key not in TRACKING}
