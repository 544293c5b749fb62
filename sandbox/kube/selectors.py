"""Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists, `gt`, `lt`) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.kube.errors import ApiError, bad_request
from sandbox.kube.types import ResourceType


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op in ("gt", "lt"):
            if not present or value is None:
                return False
            try:
                number = int(value)
            except ValueError:
                return False
            return number > int(self.values[0]) if self.op == "gt" else number < int(self.values[0])
        return False


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_BINARY = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*(.*)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


def parse_label_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if match := _SET.match(part):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _BINARY.match(part):
            key, op, value = match.group(1), match.group(2), match.group(3).strip()
            if op in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise bad_request(f"unable to parse requirement: for 'Gt', 'Lt' operators, "
                                      f"the value must be an integer: {value}")
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                if value and not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", value):
                    raise bad_request(f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": '
                                      "a valid label must be an empty string or consist of alphanumeric characters, "
                                      "'-', '_' or '.', and must start and end with an alphanumeric character")
                requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif match := _EXISTS.match(part):
            requirements.append(Requirement(match.group(2), "!" if match.group(1) else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found '{part}', expected: key, '!', '=', '!=', 'in' "
                              "or 'notin'")
    return requirements


def label_matcher(text: str | None) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda _obj: True
    requirements = parse_label_selector(text)

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


# Fields each kind accepts in a field selector besides metadata.name and metadata.namespace.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
    "Job": ("status.successful",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type"),
    "CertificateSigningRequest": ("spec.signerName",),
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def field_matcher(text: str | None, rtype: ResourceType) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda _obj: True
    allowed = {"metadata.name", "metadata.namespace", *EXTRA_FIELDS.get(rtype.kind, ())}
    terms: list[tuple[str, bool, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if field not in allowed:
            raise ApiError(400, "BadRequest", f'field label not supported: {field}')
        terms.append((field, op == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, field) == value) != negate for field, negate, value in terms)

    return matches
