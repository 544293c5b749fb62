"""Simulated controllers, as kwok does: after a delay, workloads report the status a healthy cluster gives them.

Each change to a watched kind schedules a reconcile `delay` seconds later (so observedGeneration
lags the spec, as on a real cluster); the reconcile writes the status through the status
subresource as the manager `sandbox-controller`. The annotation `sandbox.tidegate.dev/fail: "true"`
makes a workload fail (Deployment: ProgressDeadlineExceeded; Job: BackoffLimitExceeded; Pod:
CrashLoopBackOff) for tests; the reconciler must read health from the status only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from sandbox.kube.errors import ApiError
from sandbox.kube.store import Event, Obj, Store, now
from sandbox.kube.types import ResourceType

FAIL_ANNOTATION = "sandbox.tidegate.dev/fail"
MANAGER = "sandbox-controller"
KINDS = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("apps", "replicasets"),
         ("batch", "jobs"), ("", "pods"), ("", "persistentvolumeclaims"), ("", "services"),
         ("networking.k8s.io", "ingresses")}


def _failing(obj: Obj) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(FAIL_ANNOTATION, "")).lower() == "true"


def _condition(kind: str, status: str, reason: str, message: str, previous: list[Obj], probe: bool = True) -> Obj:
    stamp = now()
    old = next((c for c in previous if c.get("type") == kind), None)
    transition = old["lastTransitionTime"] if old and old.get("status") == status and "lastTransitionTime" in old \
        else stamp
    condition: Obj = {"type": kind, "status": status}
    if probe:
        condition["lastUpdateTime"] = old["lastUpdateTime"] if old and old.get("status") == status \
            and old.get("reason") == reason and "lastUpdateTime" in old else stamp
    condition.update({"lastTransitionTime": transition, "reason": reason, "message": message})
    return condition


def _hash(obj: Obj) -> str:
    template = repr((obj.get("spec") or {}).get("template"))
    return hashlib.sha256(template.encode()).hexdigest()[:10]


def desired_status(rtype: ResourceType, obj: Obj) -> Obj | None:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    conditions = status.get("conditions") or []
    name = meta.get("name", "")
    failing = _failing(obj)
    kind = rtype.kind
    if kind == "Deployment":
        replicas = int(spec.get("replicas", 1))
        ready = 0 if failing else replicas
        out: Obj = {"observedGeneration": generation}
        if replicas:
            out.update({"replicas": replicas, "updatedReplicas": replicas})
            if ready:
                out.update({"readyReplicas": ready, "availableReplicas": ready})
            else:
                out["unavailableReplicas"] = replicas
        rs_name = f"{name}-{_hash(obj)}"
        if failing:
            out["conditions"] = [
                _condition("Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", conditions),
                _condition("Progressing", "False", "ProgressDeadlineExceeded",
                           f'ReplicaSet "{rs_name}" has timed out progressing.', conditions)]
        else:
            out["conditions"] = [
                _condition("Available", "True", "MinimumReplicasAvailable",
                           "Deployment has minimum availability.", conditions),
                _condition("Progressing", "True", "NewReplicaSetAvailable",
                           f'ReplicaSet "{rs_name}" has successfully progressed.', conditions)]
        return out
    if kind in ("StatefulSet", "ReplicaSet"):
        replicas = int(spec.get("replicas", 1))
        ready = 0 if failing else replicas
        out = {"observedGeneration": generation, "replicas": replicas}
        if kind == "StatefulSet":
            revision = f"{name}-{_hash(obj)}"
            out.update({"currentReplicas": replicas, "updatedReplicas": replicas, "currentRevision": revision,
                        "updateRevision": revision, "collisionCount": 0, "availableReplicas": ready})
        else:
            out.update({"fullyLabeledReplicas": replicas, "availableReplicas": ready})
        if ready:
            out["readyReplicas"] = ready
        return out
    if kind == "DaemonSet":
        ready = 0 if failing else 1
        return {"observedGeneration": generation, "currentNumberScheduled": 1, "desiredNumberScheduled": 1,
                "numberMisscheduled": 0, "numberReady": ready, "updatedNumberScheduled": 1,
                **({"numberAvailable": 1} if ready else {"numberUnavailable": 1})}
    if kind == "Job":
        if spec.get("suspend"):
            return None
        start = status.get("startTime") or now()
        if failing:
            return {"startTime": start, "failed": int(spec.get("backoffLimit", 6)) + 1, "ready": 0, "terminating": 0,
                    "uncountedTerminatedPods": {}, "conditions": [
                        _condition("FailureTarget", "True", "BackoffLimitExceeded",
                                   "Job has reached the specified backoff limit", conditions, probe=False),
                        _condition("Failed", "True", "BackoffLimitExceeded",
                                   "Job has reached the specified backoff limit", conditions, probe=False)]}
        completions = int(spec.get("completions") or 1)
        return {"startTime": start, "completionTime": status.get("completionTime") or now(),
                "succeeded": completions, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                "conditions": [
                    _condition("SuccessCriteriaMet", "True", "CompletionsReached",
                               "Reached expected number of succeeded pods", conditions, probe=False),
                    _condition("Complete", "True", "CompletionsReached",
                               "Reached expected number of succeeded pods", conditions, probe=False)]}
    if kind == "Pod":
        containers = spec.get("containers") or []
        started = status.get("startTime") or now()
        ready_status = "False" if failing else "True"
        statuses = []
        for container in containers:
            entry: Obj = {"name": container.get("name"), "image": container.get("image"),
                          "imageID": "", "ready": not failing, "restartCount": 5 if failing else 0,
                          "started": not failing}
            entry["state"] = ({"waiting": {"reason": "CrashLoopBackOff",
                                           "message": "back-off 5m0s restarting failed container"}}
                              if failing else {"running": {"startedAt": started}})
            statuses.append(entry)
        return {**status, "phase": "Running", "startTime": started, "podIP": "10.244.0.10",
                "hostIP": "172.18.0.2", "containerStatuses": statuses,
                "conditions": [_condition(c, "True" if c in ("PodScheduled", "Initialized") else ready_status,
                                          "" if not failing else "ContainersNotReady", "", conditions, probe=False)
                               for c in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}
    if kind == "PersistentVolumeClaim":
        requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        out = {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"]}
        if requested:
            out["capacity"] = {"storage": requested}
        return out
    if kind == "Service":
        if spec.get("type") != "LoadBalancer" or failing:
            return None
        return {"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}
    if kind == "Ingress":
        return {"loadBalancer": {"ingress": [{"ip": "172.18.255.201"}]}}
    return None


class Controllers:
    """Schedules status reconciles on the server's loop after every change to a watched kind.

    Like kube-controller-manager, it also gives every new namespace its `default` ServiceAccount
    and `kube-root-ca.crt` ConfigMap; like kube-apiserver, the `kubernetes` Service in `default`.
    """

    def __init__(self, store: Store, delay: float, ca_pem: bytes | None = None) -> None:
        self.store = store
        self.delay = delay
        self.ca_pem = (ca_pem or b"").decode()
        self.pending: set[tuple[str, str, str, str]] = set()
        store.listeners.append(self.on_event)
        self._kubernetes_service()
        for (group, plural, _ns, name) in list(store.objects):
            if (group, plural) == ("", "namespaces"):
                self._namespace_content(name)

    def _create(self, group: str, plural: str, namespace: str, body: Obj, manager: str) -> None:
        rtype = self.store.registry.find(group, "v1", plural)
        if rtype is None or self.store.get_stored(rtype, namespace, body["metadata"]["name"]) is not None:
            return
        if self.store.namespace_phase(namespace) != "Active":
            return
        try:
            self.store.create(rtype, namespace, body, manager=manager)
        except ApiError:
            return

    def _namespace_content(self, namespace: str) -> None:
        self._create("", "serviceaccounts", namespace, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                        "metadata": {"name": "default"}}, "kube-controller-manager")
        self._create("", "configmaps", namespace, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "kube-root-ca.crt",
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the "
                                "kube-apiserver when using internal endpoints such as the internal service IP or "
                                "kubernetes.default.svc. No other usage is guaranteed across distributions of "
                                "Kubernetes clusters."}},
            "data": {"ca.crt": self.ca_pem}}, "kube-controller-manager")

    def _kubernetes_service(self) -> None:
        self._create("", "services", "default", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
            "kube-apiserver")

    def on_event(self, event: Event) -> None:
        if (event.group, event.plural) == ("", "namespaces") and event.type == "ADDED":
            name = str((event.obj.get("metadata") or {}).get("name", ""))
            self._later(0, self._namespace_content, name)
            return
        if (event.group, event.plural) not in KINDS or event.type == "DELETED":
            return
        meta = event.obj.get("metadata") or {}
        key = (event.group, event.plural, event.namespace, str(meta.get("name", "")))
        if key in self.pending:
            return
        self.pending.add(key)
        self._later(self.delay, self.reconcile, key)

    def _later(self, delay: float, action: Callable[[Any], None], argument: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # while the store is being prepared, before the server runs
            action(argument)
            return
        loop.call_later(delay, action, argument)

    def reconcile(self, key: tuple[str, str, str, str]) -> None:
        self.pending.discard(key)
        group, plural, namespace, name = key
        rtype = next((t for t in self.store.registry.all() if t.group == group and t.plural == plural), None)
        stored = self.store.objects.get(key)
        if rtype is None or stored is None or (stored.get("metadata") or {}).get("deletionTimestamp"):
            return
        current = self.store.render(rtype, stored)
        status = desired_status(rtype, current)
        if status is None or status == current.get("status"):
            return
        try:
            self.store.update(rtype, namespace, name, {**current, "status": status}, subresource="status",
                              field_validation="Ignore", manager=MANAGER)
        except ApiError:
            return


def attach(store: Store, delay: float | None, ca_pem: bytes | None = None) -> Controllers | None:
    """Simulated controllers on `store`, reconciling `delay` seconds after each change; None: no controllers."""
    return Controllers(store, delay, ca_pem) if delay is not None else None
