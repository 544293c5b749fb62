"""Server-side defaulting for the common kinds, from a table per kind, as the API server's SetDefaults_* do.

The schemas carry no defaults, so desired and live differ exactly where a real cluster makes them
differ: a Deployment gains replicas, strategy, revisionHistoryLimit, progressDeadlineSeconds and
pod template defaults; a Service gains type, sessionAffinity, a cluster IP and target ports; and
so on. Initial statuses are those a freshly created object shows before any controller acts.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from typing import Any

from sandbox.kube.types import ResourceType

Obj = dict[str, Any]

_WORKLOADS_WITH_TEMPLATE = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController")


def initial_status(rtype: ResourceType, obj: Obj) -> Obj | None:
    """The status a new object has on a real server (the status of a create request is ignored)."""
    if rtype.custom:
        return None
    table: dict[str, Obj] = {
        "Pod": {"phase": "Pending", "qosClass": _qos_class(obj)},
        "Service": {"loadBalancer": {}},
        "Ingress": {"loadBalancer": {}},
        "Namespace": {"phase": "Active"},
        "PersistentVolumeClaim": {"phase": "Pending"},
        "PersistentVolume": {"phase": "Pending"},
        "StatefulSet": {"replicas": 0, "availableReplicas": 0},
        "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                      "numberReady": 0},
        "ReplicaSet": {"replicas": 0},
        "ReplicationController": {"replicas": 0},
        "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
        # Fields without omitempty are written even when zero; typed clients require them.
        "VolumeAttachment": {"attached": False},
        "HorizontalPodAutoscaler": {"currentReplicas": 0, "desiredReplicas": 0} if rtype.version == "v1"
        else {"desiredReplicas": 0},
    }
    return dict(table.get(rtype.kind, {}))


def _qos_class(pod: Obj) -> str:
    containers = ((pod.get("spec") or {}).get("containers") or [])
    any_set = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        any_set = any_set or bool(requests) or bool(limits)
        if not (limits.get("cpu") and limits.get("memory")):
            guaranteed = False
        for name in ("cpu", "memory"):
            if name in requests and requests.get(name) != limits.get(name):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


def _set(obj: Obj, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


def image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        _set(probe, key, value)
    if isinstance(probe.get("httpGet"), dict):
        _set(probe["httpGet"], "scheme", "HTTP")


def _container(container: Any) -> None:
    if not isinstance(container, dict):
        return
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    if isinstance(container.get("image"), str):
        _set(container, "imagePullPolicy", image_pull_policy(container["image"]))
    _set(container, "resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(container.get(probe))
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            _set(field_ref, "apiVersion", "v1")


def pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            _container(container)
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in ("configMap", "secret"):
            if isinstance(volume.get(source), dict):
                _set(volume[source], "defaultMode", 420)
        if isinstance(volume.get("projected"), dict):
            _set(volume["projected"], "defaultMode", 420)


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec(template.get("spec"))


def apply_defaults(rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
    if rtype.custom:
        return
    spec = obj.get("spec")
    kind = rtype.kind
    if kind in _WORKLOADS_WITH_TEMPLATE and isinstance(spec, dict):
        _template(spec)
    if kind == "Deployment" and isinstance(spec, dict):
        _set(spec, "replicas", 1)
        strategy = spec.setdefault("strategy", {}) or {}
        spec["strategy"] = strategy
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {}) or {}
            strategy["rollingUpdate"] = rolling
            _set(rolling, "maxUnavailable", "25%")
            _set(rolling, "maxSurge", "25%")
        _set(spec, "revisionHistoryLimit", 10)
        _set(spec, "progressDeadlineSeconds", 600)
    elif kind == "StatefulSet" and isinstance(spec, dict):
        _set(spec, "replicas", 1)
        _set(spec, "podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {}) or {}
        spec["updateStrategy"] = strategy
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {}) or {}
            strategy["rollingUpdate"] = rolling
            _set(rolling, "partition", 0)
        _set(spec, "revisionHistoryLimit", 10)
        _set(spec, "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    elif kind == "DaemonSet" and isinstance(spec, dict):
        strategy = spec.setdefault("updateStrategy", {}) or {}
        spec["updateStrategy"] = strategy
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {}) or {}
            strategy["rollingUpdate"] = rolling
            _set(rolling, "maxUnavailable", 1)
            _set(rolling, "maxSurge", 0)
        _set(spec, "revisionHistoryLimit", 10)
    elif kind in ("ReplicaSet", "ReplicationController") and isinstance(spec, dict):
        _set(spec, "replicas", 1)
    elif kind == "Job" and isinstance(spec, dict):
        _job(spec, obj)
    elif kind == "CronJob" and isinstance(spec, dict):
        _set(spec, "concurrencyPolicy", "Allow")
        _set(spec, "suspend", False)
        _set(spec, "successfulJobsHistoryLimit", 3)
        _set(spec, "failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            _template(job_spec)
            for key, value in (("backoffLimit", 6), ("completionMode", "NonIndexed"), ("suspend", False),
                               ("podReplacementPolicy", "TerminatingOrFailed")):
                _set(job_spec, key, value)
    elif kind == "Pod" and isinstance(spec, dict):
        pod_spec(spec)
        _set(spec, "enableServiceLinks", True)
        _set(spec, "priority", 0)
        _set(spec, "preemptionPolicy", "PreemptLowerPriority")
        _set(spec, "serviceAccountName", "default")
        _set(spec, "serviceAccount", spec["serviceAccountName"])
        _set(spec, "tolerations", [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
        ])
    elif kind == "Service" and isinstance(spec, dict):
        _service(spec, old)
    elif kind == "Secret":
        _set(obj, "type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif kind == "Namespace":
        meta = obj.setdefault("metadata", {})
        labels = meta.setdefault("labels", {}) or {}
        meta["labels"] = labels
        labels["kubernetes.io/metadata.name"] = meta.get("name", "")
        spec = obj.setdefault("spec", {}) or {}
        obj["spec"] = spec
        _set(spec, "finalizers", ["kubernetes"])
    elif kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        _set(spec, "volumeMode", "Filesystem")
    elif kind == "CustomResourceDefinition" and isinstance(spec, dict):
        _set(spec, "conversion", {"strategy": "None"})


def _job(spec: Obj, obj: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    for key, value in (("parallelism", 1), ("backoffLimit", 6), ("completionMode", "NonIndexed"),
                       ("suspend", False), ("podReplacementPolicy", "TerminatingOrFailed")):
        _set(spec, key, value)
    meta = obj.get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    if not spec.get("manualSelector") and uid and name:
        generated = {"batch.kubernetes.io/controller-uid": uid}
        _set(spec, "selector", {"matchLabels": generated})
        template = spec.get("template")
        if isinstance(template, dict):
            tmeta = template.setdefault("metadata", {}) or {}
            template["metadata"] = tmeta
            labels = tmeta.setdefault("labels", {}) or {}
            tmeta["labels"] = labels
            for key, value in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                               ("controller-uid", uid), ("job-name", name)):
                labels.setdefault(key, value)


_SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")


def _allocate_ip() -> str:
    return str(_SERVICE_CIDR[random.randint(2, _SERVICE_CIDR.num_addresses - 2)])


def _service(spec: Obj, old: Obj | None) -> None:
    old_spec = (old or {}).get("spec") or {}
    _set(spec, "type", "ClusterIP")
    service_type = spec["type"]
    if service_type == "ExternalName":
        _set(spec, "sessionAffinity", "None")
        return
    _set(spec, "sessionAffinity", "None")
    if spec.get("clusterIP") is None and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
    _set(spec, "clusterIP", _allocate_ip())
    _set(spec, "clusterIPs", [spec["clusterIP"]])
    _set(spec, "ipFamilies", ["IPv4"])
    _set(spec, "ipFamilyPolicy", "SingleStack")
    _set(spec, "internalTrafficPolicy", "Cluster")
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in old_spec.get("ports") or []
                 if isinstance(p, dict)}
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        _set(port, "protocol", "TCP")
        _set(port, "targetPort", port.get("port"))
        if service_type in ("NodePort", "LoadBalancer") and port.get("nodePort") is None:
            previous = old_ports.get((port.get("port"), port["protocol"]), {}).get("nodePort")
            port["nodePort"] = previous or random.randint(30000, 32767)
    if service_type in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if service_type == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
