"""Health by kstatus rules, computed only from what the API returns, in DESIGN.md's words.

`kstatus(obj)` follows ALGORITHMS.md in order: deletionTimestamp → Terminating; generation ≠
status.observedGeneration → InProgress; Reconciling=True → InProgress, Stalled=True → Failed;
per-kind rules; a Ready condition; otherwise Current. `health_of` maps that to Healthy, Progressing,
Degraded, Missing, Suspended, Unknown (a paused Deployment or suspended CronJob is Suspended).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from providers.kubernetes import snapshot
from providers.kubernetes.client import KubeClient, KubeError, UnknownKind
from providers.kubernetes.ordering import ref_of
from providers.kubernetes.snapshot import UNSEEN, Snapshot, Unseen
from repo_schema.vocabulary import Health as Health  # re-exported: the one Health word


class Status(StrEnum):
    """kstatus results."""

    Current = "Current"
    InProgress = "InProgress"
    Failed = "Failed"
    Terminating = "Terminating"
    NotFound = "NotFound"
    Unknown = "Unknown"


_FROM_STATUS = {
    Status.Current: Health.HEALTHY, Status.InProgress: Health.PROGRESSING, Status.Failed: Health.DEGRADED,
    Status.Terminating: Health.PROGRESSING, Status.NotFound: Health.MISSING, Status.Unknown: Health.UNKNOWN,
}
_RANK = [Health.DEGRADED, Health.MISSING, Health.UNKNOWN, Health.PROGRESSING, Health.SUSPENDED, Health.HEALTHY]


def condition(obj: Mapping[str, Any], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of a condition, None when absent."""
    for item in ((obj.get("status") or {}).get("conditions") or []):
        if isinstance(item, Mapping) and item.get("type") == kind:
            return str(item.get("status"))
    return None


def _condition_item(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for item in ((obj.get("status") or {}).get("conditions") or []):
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return {}


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _replicas(obj: Mapping[str, Any], desired: int, fields: Sequence[str]) -> tuple[Status, str] | None:
    status = obj.get("status") or {}
    for name in fields:
        have = _int(status.get(name))
        if have < desired:
            return Status.InProgress, f"{name} {have}/{desired}"
    return None


def _deployment(obj: Mapping[str, Any]) -> tuple[Status, str]:
    progressing = _condition_item(obj, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Status.Failed, f"ProgressDeadlineExceeded: {progressing.get('message', '')}".rstrip(": ")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    desired = _int(spec.get("replicas", 1))
    found = _replicas(obj, desired, ("updatedReplicas", "availableReplicas", "readyReplicas"))
    if found:
        return found
    if _int(status.get("replicas")) > desired:
        return Status.InProgress, f"{_int(status.get('replicas')) - desired} old replicas are pending termination"
    return Status.Current, f"{desired} replicas available"


def _statefulset(obj: Mapping[str, Any]) -> tuple[Status, str]:
    desired = _int((obj.get("spec") or {}).get("replicas", 1))
    found = _replicas(obj, desired, ("readyReplicas", "currentReplicas", "availableReplicas"))
    status = obj.get("status") or {}
    if found:
        return found
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return Status.InProgress, "rolling update in progress"
    return Status.Current, f"{desired} replicas ready"


def _daemonset(obj: Mapping[str, Any]) -> tuple[Status, str]:
    status = obj.get("status") or {}
    desired = _int(status.get("desiredNumberScheduled"))
    found = _replicas(obj, desired, ("currentNumberScheduled", "updatedNumberScheduled", "numberAvailable",
                                     "numberReady"))
    return found or (Status.Current, f"{desired} pods available")


def _replicaset(obj: Mapping[str, Any]) -> tuple[Status, str]:
    desired = _int((obj.get("spec") or {}).get("replicas", 1))
    found = _replicas(obj, desired, ("readyReplicas", "availableReplicas"))
    return found or (Status.Current, f"{desired} replicas available")


def _job(obj: Mapping[str, Any]) -> tuple[Status, str]:
    if condition(obj, "Failed") == "True":
        item = _condition_item(obj, "Failed")
        return Status.Failed, f"{item.get('reason', 'Failed')}: {item.get('message', '')}".rstrip(": ")
    if condition(obj, "Complete") == "True":
        return Status.Current, "Job completed"
    return Status.InProgress, "Job running"


def _pod(obj: Mapping[str, Any]) -> tuple[Status, str]:
    status = obj.get("status") or {}
    phase = status.get("phase")
    for container in status.get("containerStatuses") or []:
        waiting = ((container or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"):
            return Status.Failed, f"container {container.get('name')}: {waiting.get('reason')}"
    if phase == "Succeeded":
        return Status.Current, "Pod succeeded"
    if phase == "Failed":
        return Status.Failed, "Pod failed"
    if phase == "Running" and condition(obj, "Ready") == "True":
        return Status.Current, "Pod running and ready"
    return Status.InProgress, f"Pod {phase or 'Pending'}"


def _pvc(obj: Mapping[str, Any]) -> tuple[Status, str]:
    phase = (obj.get("status") or {}).get("phase")
    return (Status.Current, "Bound") if phase == "Bound" else (Status.InProgress, f"PVC {phase or 'Pending'}")


def _service(obj: Mapping[str, Any]) -> tuple[Status, str]:
    if (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return Status.Current, "Service"
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return (Status.Current, "load balancer ready") if ingress else (Status.InProgress, "waiting for a load balancer")


def _crd(obj: Mapping[str, Any]) -> tuple[Status, str]:
    if condition(obj, "Established") == "True":
        return Status.Current, "Established"
    return Status.InProgress, "not Established yet"


_KIND_RULES: dict[tuple[str, str], Callable[[Mapping[str, Any]], tuple[Status, str]]] = {
    ("apps", "Deployment"): _deployment, ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset, ("apps", "ReplicaSet"): _replicaset, ("batch", "Job"): _job,
    ("", "Pod"): _pod, ("", "PersistentVolumeClaim"): _pvc, ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}


def kstatus(obj: Mapping[str, Any] | None) -> tuple[Status, str]:
    """One object's kstatus and a reason, from the object the API returned (None: NotFound)."""
    if obj is None:
        return Status.NotFound, "not found"
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return Status.Terminating, "being deleted"
    status = obj.get("status") or {}
    if "observedGeneration" in status and metadata.get("generation") is not None \
            and status.get("observedGeneration") != metadata.get("generation"):
        return Status.InProgress, "the latest generation is not observed yet"
    if condition(obj, "Reconciling") == "True":
        return Status.InProgress, str(_condition_item(obj, "Reconciling").get("reason") or "Reconciling")
    if condition(obj, "Stalled") == "True":
        item = _condition_item(obj, "Stalled")
        return Status.Failed, f"{item.get('reason') or 'Stalled'}: {item.get('message', '')}".rstrip(": ")
    ref = ref_of(obj)
    rule = _KIND_RULES.get((ref.group, ref.kind))
    if rule is not None:
        return rule(obj)
    ready = condition(obj, "Ready")
    if ready is not None:
        item = _condition_item(obj, "Ready")
        return (Status.Current, "Ready") if ready == "True" else \
            (Status.InProgress, str(item.get("reason") or item.get("message") or "not Ready"))
    return Status.Current, "exists"


def health_of(obj: Mapping[str, Any] | None) -> tuple[Health, str]:
    """DESIGN.md's health word and the reason."""
    if obj is not None:
        ref, spec = ref_of(obj), obj.get("spec") or {}
        if ref.kind == "Deployment" and spec.get("paused") is True:
            return Health.SUSPENDED, "Deployment is paused"
        if ref.kind == "CronJob" and spec.get("suspend") is True:
            return Health.SUSPENDED, "CronJob is suspended"
    status, reason = kstatus(obj)
    return _FROM_STATUS[status], reason


def aggregate(values: Iterable[Health]) -> Health:
    """Worst first: Degraded, Missing, Unknown, Progressing, Suspended, Healthy (empty → Healthy)."""
    found = set(values)
    for health in _RANK:
        if health in found:
            return health
    return Health.HEALTHY


@dataclass(frozen=True)
class ObjectHealth:
    workload: str
    address: str
    health: Health
    reason: str


@dataclass
class Report:
    objects: list[ObjectHealth] = field(default_factory=list)
    timed_out: bool = False
    cancelled: str = ""
    """Why the wait stopped before everything was healthy (a newer revision is ready to plan)."""

    @property
    def workloads(self) -> dict[str, Health]:
        names = dict.fromkeys(item.workload for item in self.objects)
        return {name: aggregate(i.health for i in self.objects if i.workload == name) for name in names}

    @property
    def environment(self) -> Health:
        return aggregate(item.health for item in self.objects)

    def problems(self) -> list[ObjectHealth]:
        return [item for item in self.objects if item.health not in (Health.HEALTHY, Health.SUSPENDED)]


def _judge(client: KubeClient, body: Mapping[str, Any], live: Mapping[str, Any] | Unseen | None) -> tuple[Health, str]:
    ref = ref_of(body)
    try:
        if live is UNSEEN:
            live = client.get(str(body.get("apiVersion", "")), ref.kind, ref.name, ref.namespace or None)
        return health_of(live)
    except UnknownKind:
        return Health.MISSING, "kind not served"
    except KubeError as error:
        return Health.UNKNOWN, str(error)


def _kinds(objects: Iterable[tuple[str, Mapping[str, Any]]]) -> set[tuple[str, str]]:
    return {(str(body.get("apiVersion", "")), str(body.get("kind", ""))) for _, body in objects}


def _read(client: KubeClient, objects: Sequence[tuple[str, Mapping[str, Any]]],
          label_selector: str | None) -> Snapshot:
    if label_selector is None:
        return Snapshot()
    namespaces = {ref_of(body).namespace for _, body in objects}
    try:
        return snapshot.read(client, _kinds(objects), label_selector, namespaces)
    except KubeError:
        return Snapshot()  # each object is then read on its own, and its error shown on it


def assess(client: KubeClient, objects: Sequence[tuple[str, Mapping[str, Any]]], *,
           label_selector: str | None = None) -> Report:
    """Read each (workload, desired body) from the API and judge it: with `label_selector`, one
    LIST per kind (objects it does not return are read on their own), else one GET per object."""
    live = _read(client, objects, label_selector)
    report = Report()
    for workload, body in objects:
        health, reason = _judge(client, body, live.get(ref_of(body)))
        report.objects.append(ObjectHealth(workload, ref_of(body).address, health, reason))
    return report


SETTLED = (Health.HEALTHY, Health.SUSPENDED)
MAX_INTERVAL = 1.0


def wait(client: KubeClient, objects: Sequence[tuple[str, Mapping[str, Any]]], *, timeout: float,
         interval: float = 0.1, label_selector: str | None = None,
         stop: Callable[[], str | None] | None = None) -> Report:
    """Poll until everything is Healthy (or Suspended); stop at the first Degraded or at the timeout.

    Each round reads only what is not settled yet (one LIST per kind with `label_selector`), and
    the pause between rounds grows from `interval` to a second: a rollout that takes a minute costs
    about sixty rounds, not six hundred. `stop` is asked between rounds; a reason ends the wait
    (`Report.cancelled`), as Flux cancels a health check when a newer revision arrives."""
    deadline = time.monotonic() + timeout
    judged: dict[int, ObjectHealth] = {}
    pause = interval
    while True:
        pending = [(index, item) for index, item in enumerate(objects)
                   if index not in judged or judged[index].health not in SETTLED]
        round_report = assess(client, [item for _, item in pending], label_selector=label_selector)
        for (index, _), found in zip(pending, round_report.objects, strict=True):
            judged[index] = found
        report = Report([judged[index] for index in range(len(objects))])
        if report.environment in (*SETTLED, Health.DEGRADED):
            return report
        if time.monotonic() >= deadline:
            report.timed_out = True
            return report
        reason = stop() if stop is not None else None
        if reason:
            report.cancelled = reason
            return report
        time.sleep(pause)
        pause = min(MAX_INTERVAL, pause * 1.5)
