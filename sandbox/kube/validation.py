"""The API server's semantic validation for the common kinds: names, selectors, containers, immutable fields.

Each failure is a `field.Error` and the whole set is answered as one 422 Invalid, with the message
format of `k8s.io/apimachinery/pkg/util/validation/field`.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.kube import errors
from sandbox.kube.errors import FieldError, GoLiteral
from sandbox.kube.types import ResourceType

Obj = dict[str, Any]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
             "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
               "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
               "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")

LABEL_NAMED = frozenset({"Namespace"})
DNS1035_NAMED = frozenset({"Service"})
_APPS_SELECTED = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})


def _name_errors(rtype: ResourceType, name: str) -> list[FieldError]:
    if rtype.kind in DNS1035_NAMED and not rtype.custom:
        if len(name) > 63 or not DNS1035_LABEL.match(name):
            return [FieldError("Invalid value", "metadata.name", DNS1035_MSG, name)]
        return []
    if rtype.kind in LABEL_NAMED and not rtype.custom:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            return [FieldError("Invalid value", "metadata.name", LABEL_MSG, name)]
        return []
    if len(name) > 253:
        return [FieldError("Invalid value", "metadata.name", "must be no more than 253 characters", name)]
    if not DNS1123_SUBDOMAIN.match(name):
        return [FieldError("Invalid value", "metadata.name", SUBDOMAIN_MSG, name)]
    return []


def _go_map(value: Any) -> GoLiteral:
    if not isinstance(value, dict):
        return GoLiteral(value)
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
    return GoLiteral("map[string]string{" + inner + "}")


def _go_selector(selector: Any) -> GoLiteral:
    """A LabelSelector as the API server prints it in a field error (`%#v` of the struct)."""
    if not isinstance(selector, dict):
        return GoLiteral(str(selector))
    labels = _go_map(selector["matchLabels"]) if selector.get("matchLabels") else "map[string]string(nil)"
    requirements = [r for r in selector.get("matchExpressions") or [] if isinstance(r, dict)]
    expressions = "[]v1.LabelSelectorRequirement(nil)" if not requirements else "[]v1.LabelSelectorRequirement{" + \
        ", ".join(f'v1.LabelSelectorRequirement{{Key:"{r.get("key", "")}", Operator:"{r.get("operator", "")}", '
                  "Values:[]string{" + ", ".join(f'"{v}"' for v in r.get("values") or []) + "}}"
                  for r in requirements) + "}"
    return GoLiteral(f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _one_of(value: Any, path: str, allowed: tuple[str, ...]) -> list[FieldError]:
    if value is None or value in allowed:
        return []
    supported = ", ".join(f'"{v}"' for v in allowed)
    return [FieldError("Unsupported value", path, f"supported values: {supported}", value)]


def _pod_spec(spec: Obj, path: str, restart_policies: tuple[str, ...] = ("Always", "Never", "OnFailure")
              ) -> list[FieldError]:
    errs = _containers(spec, path)
    errs += _one_of(spec.get("restartPolicy"), f"{path}.restartPolicy", restart_policies)
    errs += _one_of(spec.get("dnsPolicy"), f"{path}.dnsPolicy",
                    ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
    for index, container in enumerate(spec.get("containers") or []):
        if not isinstance(container, dict):
            continue
        where = f"{path}.containers[{index}]"
        errs += _one_of(container.get("imagePullPolicy"), f"{where}.imagePullPolicy",
                        ("Always", "IfNotPresent", "Never"))
        for number, port in enumerate(container.get("ports") or []):
            if isinstance(port, dict):
                errs += _one_of(port.get("protocol"), f"{where}.ports[{number}].protocol", ("SCTP", "TCP", "UDP"))
    return errs


def _containers(spec: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    containers = spec.get("containers")
    if not containers:
        return [FieldError("Required value", f"{path}.containers", "")]
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            continue
        name = container.get("name")
        if not name:
            errs.append(FieldError("Required value", f"{where}.name", ""))
        elif not DNS1123_LABEL.match(str(name)):
            errs.append(FieldError("Invalid value", f"{where}.name", LABEL_MSG, name))
        elif name in seen:
            errs.append(FieldError("Duplicate value", f"{where}.name", "", name))
        else:
            seen.add(str(name))
        if not container.get("image"):
            errs.append(FieldError("Required value", f"{where}.image", ""))
    return errs


_STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds")


def _statefulset_update(spec: Obj, old_spec: Obj) -> list[FieldError]:
    """ValidateStatefulSetUpdate: only a few spec fields may change in place."""
    def strip(s: Obj) -> Obj:
        return {k: v for k, v in s.items() if k not in _STATEFULSET_MUTABLE}

    if strip(spec) == strip(old_spec):
        return []
    return [FieldError("Forbidden", "spec", "updates to statefulset spec for fields other than 'replicas', "
                       "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                       "'minReadySeconds' are forbidden")]


def _claim_update(spec: Obj, old_spec: Obj) -> list[FieldError]:
    """ValidatePersistentVolumeClaimUpdate: the spec is fixed but for the storage request (growth)."""
    def strip(s: Obj) -> Obj:
        resources = {k: v for k, v in (s.get("resources") or {}).items() if k != "requests"}
        return {**{k: v for k, v in s.items() if k not in ("resources", "volumeAttributesClassName")},
                "resources": resources}

    if not old_spec.get("volumeName") and spec.get("volumeName"):  # binding sets it once
        old_spec = {**old_spec, "volumeName": spec["volumeName"]}
    if strip(spec) == strip(old_spec):
        return []
    return [FieldError("Forbidden", "spec", "spec is immutable after creation except resources.requests and "
                       "volumeAttributesClassName for bound claims")]


def validate(rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    errs = _name_errors(rtype, name) if old is None else []
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if rtype.custom:
        if errs:
            raise errors.invalid(rtype, name, errs)
        return
    kind = rtype.kind
    if kind in _APPS_SELECTED and rtype.group == "apps":
        spec = spec or {}
        if spec.get("replicas") is not None and (not isinstance(spec["replicas"], int) or spec["replicas"] < 0):
            errs.append(FieldError("Invalid value", "spec.replicas", "must be greater than or equal to 0",
                                   spec["replicas"]))
        selector = spec.get("selector")
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector:
            errs.append(FieldError("Required value", "spec.selector", ""))
        elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errs.append(FieldError("Invalid value", "spec.selector", "empty selector is invalid for deployment",
                                   _go_selector({})))
        elif not _selector_matches(selector, labels):
            errs.append(FieldError("Invalid value", "spec.template.metadata.labels",
                                   "`selector` does not match template `labels`", _go_map(labels)))
        # Workload controllers only run pods that always restart.
        errs.extend(_pod_spec(template.get("spec") or {}, "spec.template.spec", ("Always",)))
        if kind == "Deployment":
            errs += _one_of((spec.get("strategy") or {}).get("type"), "spec.strategy.type",
                            ("Recreate", "RollingUpdate"))
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            errs.append(FieldError("Invalid value", "spec.selector", "field is immutable", _go_selector(selector)))
        if kind == "StatefulSet" and old is not None:
            errs.extend(_statefulset_update(spec, old.get("spec") or {}))
    elif kind == "Pod":
        errs.extend(_pod_spec(spec or {}, "spec"))
    elif kind == "Service" and spec is not None:
        old_spec = (old or {}).get("spec") or {}
        if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            errs.append(FieldError("Unsupported value", "spec.type", 'supported values: "ClusterIP", '
                                   '"ExternalName", "LoadBalancer", "NodePort"', spec.get("type")))
        if old is not None and old_spec.get("clusterIP") and spec.get("clusterIP") != old_spec.get("clusterIP") \
                and spec.get("type") != "ExternalName":
            errs.append(FieldError("Invalid value", "spec.clusterIPs[0]", "may not change once set",
                                   GoLiteral(f'[]string{{"{spec.get("clusterIP")}"}}')))
        if spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None" and not spec.get("ports"):
            errs.append(FieldError("Required value", "spec.ports", ""))
    elif kind == "Job" and spec is not None and old is not None:
        old_spec = old.get("spec") or {}
        if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
            errs.append(FieldError("Invalid value", "spec.template", "field is immutable", "core.PodTemplateSpec{...}",
                                   show_value=False))
    elif kind == "PersistentVolumeClaim" and old is not None and spec is not None:
        errs.extend(_claim_update(spec, old.get("spec") or {}))
    elif kind == "Secret" and old is not None and obj.get("type") != old.get("type"):
        errs.append(FieldError("Invalid value", "type", "field is immutable", obj.get("type")))
    if kind in ("ConfigMap", "Secret") and old is not None and old.get("immutable"):
        for field in ("data", "binaryData") if kind == "ConfigMap" else ("data",):
            if obj.get(field) != old.get(field):
                errs.append(FieldError("Forbidden", field, "field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            errs.append(FieldError("Forbidden", "immutable", "field is immutable when `immutable` is set"))
    elif kind == "CustomResourceDefinition" and spec is not None:
        plural = (spec.get("names") or {}).get("plural", "")
        group = spec.get("group", "")
        if name != f"{plural}.{group}":
            errs.append(FieldError("Invalid value", "metadata.name", 'must be spec.names.plural+"."+spec.group',
                                   name))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errs.append(FieldError("Unsupported value", "spec.scope", 'supported values: "Cluster", "Namespaced"',
                                   spec.get("scope")))
        versions = spec.get("versions") or []
        if sum(1 for v in versions if v.get("storage")) != 1:
            errs.append(FieldError("Invalid value", "spec.versions", "must have exactly one version marked as "
                                   "storage version", versions, show_value=False))
    if errs:
        raise errors.invalid(rtype, name, errs)
