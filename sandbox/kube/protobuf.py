"""Decoding the Kubernetes protobuf request bodies that kubectl's typed commands send.

kubectl 1.37 sends `application/vnd.kubernetes.protobuf` bodies from its typed clients
(`kubectl create namespace|configmap|secret|serviceaccount`, DeleteOptions). The envelope is the
magic `k8s\\x00` followed by a `runtime.Unknown` whose `raw` is the typed message. Field numbers
are those of `k8s.io/api` and `k8s.io/apimachinery` `generated.proto`, for the kinds listed in
`KINDS`; any other kind answers 415 so that the client sees the server does not take it.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

MAGIC = b"k8s\x00"

# message name -> field number -> (json name, type, repeated); types: string, bytes, int, bool,
# map (string->string), bmap (string->bytes), time, or another message name.
Schema = dict[int, tuple[str, str, bool]]
MESSAGES: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", "string", False), 4: ("contentType", "string", False)},
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False), 2: ("generateName", "string", False), 3: ("namespace", "string", False),
        4: ("selfLink", "string", False), 5: ("uid", "string", False), 6: ("resourceVersion", "string", False),
        7: ("generation", "int", False), 8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False), 10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map", False), 12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", "string", True),
    },
    "OwnerReference": {1: ("kind", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False),
                       5: ("apiVersion", "string", False), 6: ("controller", "bool", False),
                       7: ("blockOwnerDeletion", "bool", False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False), 3: ("binaryData", "bmap", False),
                  4: ("immutable", "bool", False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "bmap", False), 3: ("type", "string", False),
               4: ("stringData", "map", False), 5: ("immutable", "bool", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ObjectReference": {1: ("kind", "string", False), 2: ("namespace", "string", False), 3: ("name", "string", False),
                        4: ("uid", "string", False), 5: ("apiVersion", "string", False),
                        6: ("resourceVersion", "string", False), 7: ("fieldPath", "string", False)},
    "LocalObjectReference": {1: ("name", "string", False)},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", False), 2: ("preconditions", "Preconditions", False),
                      3: ("orphanDependents", "bool", False), 4: ("propagationPolicy", "string", False),
                      5: ("dryRun", "string", True)},
    "Preconditions": {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)},
    "Time": {1: ("seconds", "int", False), 2: ("nanos", "int", False)},
    "MapEntry": {1: ("key", "string", False), 2: ("value", "bytes", False)},
}
KINDS = frozenset({"Namespace", "ConfigMap", "Secret", "ServiceAccount", "DeleteOptions"})


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


def decode_message(data: bytes, message: str) -> dict[str, Any]:
    schema = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        if number not in schema:
            continue
        name, kind, repeated = schema[number]
        decoded: Any
        if kind == "string":
            decoded = bytes(value).decode()
        elif kind == "bytes":
            decoded = bytes(value)
        elif kind == "int":
            decoded = _signed(int(value))
        elif kind == "bool":
            decoded = bool(value)
        elif kind in ("map", "bmap"):
            entry = decode_message(bytes(value), "MapEntry")
            raw = entry.get("value", b"")
            target = out.setdefault(name, {})
            target[entry.get("key", b"").decode() if isinstance(entry.get("key"), bytes) else entry.get("key", "")] = (
                base64.b64encode(raw).decode() if kind == "bmap" else raw.decode())
            continue
        elif kind == "time":
            stamp = decode_message(bytes(value), "Time")
            moment = datetime.datetime.fromtimestamp(stamp.get("seconds", 0), datetime.UTC)
            decoded = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            decoded = decode_message(bytes(value), kind)
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
