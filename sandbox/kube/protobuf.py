"""Decoding the Kubernetes protobuf request bodies that kubectl's typed commands send.

kubectl 1.37's typed clients send `application/vnd.kubernetes.protobuf` bodies, and client-go does
not fall back to JSON when the server answers 415 (it does so only for CBOR): `kubectl create
namespace|configmap|secret|serviceaccount|deployment|job|cronjob|service|ingress|pdb|role|
rolebinding|clusterrole|clusterrolebinding|priorityclass|quota` and DeleteOptions all arrive so, so
the emulator must read them. (`kubectl run`, `expose`, `apply` and `create -f` send JSON.)

The envelope is the magic `k8s\\x00` followed by a `runtime.Unknown` whose `raw` is the typed
message. Field numbers are those of `k8s.io/api` and `k8s.io/apimachinery` `generated.proto`.
Go's generated code writes every non-pointer field, zero or not: a zero scalar means "unset" and is
dropped (as `omitempty` would in JSON) unless the field is a pointer or has no `omitempty` (types
ending in `*`). A field this table does not know is ignored when zero and refused otherwise (415),
so that nothing a client sent is silently lost.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

MAGIC = b"k8s\x00"

# message name -> field number -> (json name, type, repeated). Types: string, bytes, int, bool (a
# trailing * keeps zero values), map (string->string), bmap (string->bytes), qmap (string->Quantity),
# time, quantity, intstr, or another message name. An empty json name inlines the message's fields.
Schema = dict[int, tuple[str, str, bool]]
_S, _I, _B = "string", "int", "bool"
MESSAGES: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", _S, False), 4: ("contentType", _S, False)},
    "TypeMeta": {1: ("apiVersion", _S, False), 2: ("kind", _S, False)},
    "ObjectMeta": {
        1: ("name", _S, False), 2: ("generateName", _S, False), 3: ("namespace", _S, False),
        4: ("selfLink", _S, False), 5: ("uid", _S, False), 6: ("resourceVersion", _S, False),
        7: ("generation", _I, False), 8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False), 10: ("deletionGracePeriodSeconds", "int*", False),
        11: ("labels", "map", False), 12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", _S, True),
    },
    "OwnerReference": {1: ("kind", _S, False), 3: ("name", _S, False), 4: ("uid", _S, False),
                       5: ("apiVersion", _S, False), 6: ("controller", "bool*", False),
                       7: ("blockOwnerDeletion", "bool*", False)},
    "LabelSelector": {1: ("matchLabels", "map", False), 2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", _S, False), 2: ("operator", _S, False), 3: ("values", _S, True)},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False),
                  3: ("status", "Empty", False)},
    "NamespaceSpec": {1: ("finalizers", _S, True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False), 3: ("binaryData", "bmap", False),
                  4: ("immutable", "bool*", False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "bmap", False), 3: ("type", _S, False),
               4: ("stringData", "map", False), 5: ("immutable", "bool*", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool*", False)},
    "ObjectReference": {1: ("kind", _S, False), 2: ("namespace", _S, False), 3: ("name", _S, False),
                        4: ("uid", _S, False), 5: ("apiVersion", _S, False),
                        6: ("resourceVersion", _S, False), 7: ("fieldPath", _S, False)},
    "LocalObjectReference": {1: ("name", _S, False)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {
        2: ("containers", "Container", True), 3: ("restartPolicy", _S, False),
        4: ("terminationGracePeriodSeconds", "int*", False), 5: ("activeDeadlineSeconds", "int*", False),
        6: ("dnsPolicy", _S, False), 7: ("nodeSelector", "map", False), 8: ("serviceAccountName", _S, False),
        9: ("serviceAccount", _S, False), 10: ("nodeName", _S, False), 11: ("hostNetwork", _B, False),
        12: ("hostPID", _B, False), 13: ("hostIPC", _B, False),
        15: ("imagePullSecrets", "LocalObjectReference", True), 16: ("hostname", _S, False),
        17: ("subdomain", _S, False), 19: ("schedulerName", _S, False), 20: ("initContainers", "Container", True),
        21: ("automountServiceAccountToken", "bool*", False), 24: ("priorityClassName", _S, False),
        25: ("priority", "int*", False), 27: ("shareProcessNamespace", "bool*", False),
        29: ("runtimeClassName", "string*", False), 30: ("enableServiceLinks", "bool*", False),
        31: ("preemptionPolicy", "string*", False), 35: ("setHostnameAsFQDN", "bool*", False),
        37: ("hostUsers", "bool*", False),
    },
    "Container": {
        1: ("name", _S, False), 2: ("image", _S, False), 3: ("command", _S, True), 4: ("args", _S, True),
        5: ("workingDir", _S, False), 6: ("ports", "ContainerPort", True), 7: ("env", "EnvVar", True),
        8: ("resources", "ResourceRequirements", False), 13: ("terminationMessagePath", _S, False),
        14: ("imagePullPolicy", _S, False), 16: ("stdin", _B, False), 17: ("stdinOnce", _B, False),
        18: ("tty", _B, False), 20: ("terminationMessagePolicy", _S, False), 24: ("restartPolicy", "string*", False),
    },
    "ContainerPort": {1: ("name", _S, False), 2: ("hostPort", _I, False), 3: ("containerPort", "int*", False),
                      4: ("protocol", _S, False), 5: ("hostIP", _S, False)},
    "EnvVar": {1: ("name", _S, False), 2: ("value", _S, False)},
    "ResourceRequirements": {1: ("limits", "qmap", False), 2: ("requests", "qmap", False)},
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False), 3: ("status", "Empty", False)},
    "ServiceSpec": {
        1: ("ports", "ServicePort", True), 2: ("selector", "map", False), 3: ("clusterIP", _S, False),
        4: ("type", _S, False), 5: ("externalIPs", _S, True), 7: ("sessionAffinity", _S, False),
        8: ("loadBalancerIP", _S, False), 9: ("loadBalancerSourceRanges", _S, True), 10: ("externalName", _S, False),
        11: ("externalTrafficPolicy", _S, False), 12: ("healthCheckNodePort", _I, False),
        13: ("publishNotReadyAddresses", _B, False), 17: ("ipFamilyPolicy", "string*", False),
        18: ("clusterIPs", _S, True), 19: ("ipFamilies", _S, True),
        20: ("allocateLoadBalancerNodePorts", "bool*", False),
        21: ("loadBalancerClass", "string*", False), 22: ("internalTrafficPolicy", "string*", False),
        23: ("trafficDistribution", "string*", False),
    },
    "ServicePort": {1: ("name", _S, False), 2: ("protocol", _S, False), 3: ("port", "int*", False),
                    4: ("targetPort", "intstr", False), 5: ("nodePort", _I, False),
                    6: ("appProtocol", "string*", False)},
    "ResourceQuota": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ResourceQuotaSpec", False),
                      3: ("status", "Empty", False)},
    "ResourceQuotaSpec": {1: ("hard", "qmap", False), 2: ("scopes", _S, True)},
    # apps/v1
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False),
                   3: ("status", "Empty", False)},
    "DeploymentSpec": {
        1: ("replicas", "int*", False), 2: ("selector", "LabelSelector", False),
        3: ("template", "PodTemplateSpec", False),
        4: ("strategy", "DeploymentStrategy", False), 5: ("minReadySeconds", _I, False),
        6: ("revisionHistoryLimit", "int*", False), 7: ("paused", _B, False),
        9: ("progressDeadlineSeconds", "int*", False),
    },
    "DeploymentStrategy": {1: ("type", _S, False), 2: ("rollingUpdate", "RollingUpdateDeployment", False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr", False), 2: ("maxSurge", "intstr", False)},
    # batch/v1
    "Job": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "JobSpec", False), 3: ("status", "Empty", False)},
    "JobSpec": {
        1: ("parallelism", "int*", False), 2: ("completions", "int*", False),
        3: ("activeDeadlineSeconds", "int*", False),
        4: ("selector", "LabelSelector", False), 5: ("manualSelector", "bool*", False),
        6: ("template", "PodTemplateSpec", False), 7: ("backoffLimit", "int*", False),
        8: ("ttlSecondsAfterFinished", "int*", False), 9: ("completionMode", "string*", False),
        10: ("suspend", "bool*", False), 12: ("backoffLimitPerIndex", "int*", False),
        13: ("maxFailedIndexes", "int*", False), 14: ("podReplacementPolicy", "string*", False),
        15: ("managedBy", "string*", False),
    },
    "CronJob": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "CronJobSpec", False), 3: ("status", "Empty", False)},
    "CronJobSpec": {
        1: ("schedule", _S, False), 2: ("startingDeadlineSeconds", "int*", False), 3: ("concurrencyPolicy", _S, False),
        4: ("suspend", "bool*", False), 5: ("jobTemplate", "JobTemplateSpec", False),
        6: ("successfulJobsHistoryLimit", "int*", False), 7: ("failedJobsHistoryLimit", "int*", False),
        8: ("timeZone", "string*", False),
    },
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "JobSpec", False)},
    # networking.k8s.io/v1
    "Ingress": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "IngressSpec", False), 3: ("status", "Empty", False)},
    "IngressSpec": {1: ("defaultBackend", "IngressBackend", False), 2: ("tls", "IngressTLS", True),
                    3: ("rules", "IngressRule", True), 4: ("ingressClassName", "string*", False)},
    "IngressTLS": {1: ("hosts", _S, True), 2: ("secretName", _S, False)},
    "IngressRule": {1: ("host", _S, False), 2: ("", "IngressRuleValue", False)},
    "IngressRuleValue": {1: ("http", "HTTPIngressRuleValue", False)},
    "HTTPIngressRuleValue": {1: ("paths", "HTTPIngressPath", True)},
    "HTTPIngressPath": {1: ("path", _S, False), 2: ("backend", "IngressBackend", False),
                        3: ("pathType", "string*", False)},
    "IngressBackend": {4: ("service", "IngressServiceBackend", False)},
    "IngressServiceBackend": {1: ("name", _S, False), 2: ("port", "ServiceBackendPort", False)},
    "ServiceBackendPort": {1: ("name", _S, False), 2: ("number", _I, False)},
    # policy/v1
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodDisruptionBudgetSpec", False),
                            3: ("status", "Empty", False)},
    "PodDisruptionBudgetSpec": {1: ("minAvailable", "intstr", False), 2: ("selector", "LabelSelector", False),
                                3: ("maxUnavailable", "intstr", False),
                                4: ("unhealthyPodEvictionPolicy", "string*", False)},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True),
                    3: ("aggregationRule", "AggregationRule", False)},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True)},
    "PolicyRule": {1: ("verbs", _S, True), 2: ("apiGroups", _S, True), 3: ("resources", _S, True),
                   4: ("resourceNames", _S, True), 5: ("nonResourceURLs", _S, True)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                    3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                           3: ("roleRef", "RoleRef", False)},
    "Subject": {1: ("kind", _S, False), 2: ("apiGroup", _S, False), 3: ("name", _S, False),
                4: ("namespace", _S, False)},
    "RoleRef": {1: ("apiGroup", _S, False), 2: ("kind", _S, False), 3: ("name", _S, False)},
    # scheduling.k8s.io/v1
    "PriorityClass": {1: ("metadata", "ObjectMeta", False), 2: ("value", "int*", False),
                      3: ("globalDefault", _B, False), 4: ("description", _S, False),
                      5: ("preemptionPolicy", "string*", False)},
    # meta/v1 and helpers
    "DeleteOptions": {1: ("gracePeriodSeconds", "int*", False), 2: ("preconditions", "Preconditions", False),
                      3: ("orphanDependents", "bool*", False), 4: ("propagationPolicy", "string*", False),
                      5: ("dryRun", _S, True)},
    "Preconditions": {1: ("uid", "string*", False), 2: ("resourceVersion", "string*", False)},
    "Time": {1: ("seconds", _I, False), 2: ("nanos", _I, False)},
    "IntOrString": {1: ("type", _I, False), 2: ("intVal", _I, False), 3: ("strVal", _S, False)},
    "Quantity": {1: ("string", _S, False)},
    "MapEntry": {1: ("key", "bytes", False), 2: ("value", "bytes", False)},
    "Empty": {},  # a status on create: the server ignores it; its content is dropped
}
KINDS = frozenset({
    "Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "ResourceQuota", "Deployment", "Job", "CronJob",
    "Ingress", "PodDisruptionBudget", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "PriorityClass",
    "DeleteOptions",
})


class ProtobufError(ValueError):
    """The body is not a protobuf envelope of a kind this decoder knows."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, wire, data[pos:pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, wire, int.from_bytes(data[pos:pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, wire, int.from_bytes(data[pos:pos + 4], "little")))
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _zero(value: Any) -> bool:
    return value in (0, b"", "") or value is False


def _scalar(kind: str, value: Any) -> Any:
    base = kind.rstrip("*")
    if base == "string":
        return bytes(value).decode()
    if base == "bytes":
        return bytes(value)
    if base == "int":
        return _signed(int(value))
    return bool(value)


def _special(kind: str, value: bytes) -> Any:
    """Messages that JSON shows as one value: time, Quantity, IntOrString; None means unset."""
    if kind == "time":
        stamp = decode_message(value, "Time")
        if not stamp.get("seconds"):
            return None
        moment = datetime.datetime.fromtimestamp(stamp["seconds"], datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "quantity":
        return decode_message(value, "Quantity").get("string", "")
    number = decode_message(value, "IntOrString")
    return number.get("strVal", "") if number.get("type") == 1 else number.get("intVal", 0)


def _map_entry(kind: str, value: bytes) -> tuple[str, Any]:
    entry = decode_message(value, "MapEntry")
    key = bytes(entry.get("key", b"")).decode()
    raw = bytes(entry.get("value", b""))
    if kind == "bmap":
        return key, base64.b64encode(raw).decode()
    if kind == "qmap":
        return key, _special("quantity", raw)
    return key, raw.decode()


def decode_message(data: bytes, message: str) -> dict[str, Any]:
    schema = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        if number not in schema:
            if message != "Empty" and not _zero(value):
                raise ProtobufError(f"{message} field {number} is not known to the sandbox's protobuf decoder")
            continue
        name, kind, repeated = schema[number]
        decoded: Any
        if kind.rstrip("*") in ("string", "bytes", "int", "bool"):
            if _zero(value) and not kind.endswith("*") and not repeated:
                continue  # Go writes unset non-pointer fields as zero values
            decoded = _scalar(kind, value)
        elif kind in ("map", "bmap", "qmap"):
            key, item = _map_entry(kind, bytes(value))
            out.setdefault(name, {})[key] = item
            continue
        elif kind in ("time", "quantity", "intstr"):
            decoded = _special(kind, bytes(value))
            if decoded is None:
                continue
        else:
            decoded = decode_message(bytes(value), kind)
            if not name:  # an inlined (embedded) struct
                out.update(decoded)
                continue
        if repeated:
            out.setdefault(name, []).append(decoded)
        else:
            out[name] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object, with its apiVersion and kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    unknown = decode_message(body[len(MAGIC):], "Unknown")
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported by the sandbox")
    obj = decode_message(unknown.get("raw", b""), kind)
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
