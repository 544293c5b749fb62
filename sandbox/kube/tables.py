"""Server-side printing: `meta.k8s.io/v1` Table answers for `kubectl get`, as the API server's table convertors give.

Column sets follow the API server's printers for the common kinds; other built-ins get the
default convertor's Name and Created At; custom resources get Name, their additionalPrinterColumns
(simple `.a.b` JSON paths) and Age.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

from sandbox.kube.types import ResourceType

Obj = dict[str, Any]
TABLE_ACCEPT = "as=Table"
NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
                    "resources may allow a client to request the generation of an appropriate name automatically. "
                    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
                    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
                   "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
                   "not set this value. It is represented in RFC3339 form and is in UTC.")


def wants_table(accept: str) -> bool:
    return TABLE_ACCEPT in accept and "g=meta.k8s.io" in accept


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def age(obj: Obj) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    return human_duration(time.time() - created)


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "", description: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": description or name, "priority": priority}


def _dig(obj: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _ports(ports: list[Obj]) -> str:
    if not ports:
        return "<none>"
    out = []
    for port in ports:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        out.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(out)


def _selector(selector: Any) -> str:
    labels = (selector or {}).get("matchLabels") or {} if isinstance(selector, dict) else {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _deployment(o: Obj) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0), age(o), ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), _selector(spec.get("selector"))]


def _pod(o: Obj) -> list[Any]:
    status = o.get("status") or {}
    containers = (o.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("phase", "Pending")
    for entry in statuses:
        waiting = (entry.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    return [f"{ready}/{len(containers)}", reason, str(restarts), age(o), status.get("podIP", "<none>"),
            (o.get("spec") or {}).get("nodeName", "<none>"), "<none>", "<none>"]


def _service(o: Obj) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    external = "<none>"
    if spec.get("type") == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or "<pending>"
    elif spec.get("type") == "ExternalName":
        external = spec.get("externalName", "<none>")
    selector = spec.get("selector") or {}
    return [spec.get("type", ""), spec.get("clusterIP", "<none>"), external, _ports(spec.get("ports") or []), age(o),
            ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"]


PRINTERS: dict[str, tuple[list[Obj], Callable[[Obj], list[Any]]]] = {
    "Deployment": ([_col("Ready", description="Number of the pod with ready state"),
                    _col("Up-to-date", "integer", description="Total number of non-terminated pods targeted by this "
                         "deployment that have the desired template spec."),
                    _col("Available", "integer", description="Total number of available pods (ready for at least "
                         "minReadySeconds) targeted by this deployment."),
                    _col("Age", description=AGE_DESCRIPTION), _col("Containers", priority=1),
                    _col("Images", priority=1), _col("Selector", priority=1)], _deployment),
    "Pod": ([_col("Ready"), _col("Status"), _col("Restarts"), _col("Age", description=AGE_DESCRIPTION),
             _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
             _col("Readiness Gates", priority=1)], _pod),
    "Service": ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                 _col("Age", description=AGE_DESCRIPTION), _col("Selector", priority=1)], _service),
    "ConfigMap": ([_col("Data", "integer"), _col("Age", description=AGE_DESCRIPTION)],
                  lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)]),
    "Secret": ([_col("Type"), _col("Data", "integer"), _col("Age", description=AGE_DESCRIPTION)],
               lambda o: [o.get("type", ""), len(o.get("data") or {}), age(o)]),
    "Namespace": ([_col("Status"), _col("Age", description=AGE_DESCRIPTION)],
                  lambda o: [(o.get("status") or {}).get("phase", ""), age(o)]),
    "ServiceAccount": ([_col("Secrets", "integer"), _col("Age", description=AGE_DESCRIPTION)],
                       lambda o: [len(o.get("secrets") or []), age(o)]),
    "ReplicaSet": ([_col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                    _col("Age", description=AGE_DESCRIPTION)],
                   lambda o: [(o.get("spec") or {}).get("replicas", 0), (o.get("status") or {}).get("replicas", 0),
                              (o.get("status") or {}).get("readyReplicas", 0), age(o)]),
    "StatefulSet": ([_col("Ready"), _col("Age", description=AGE_DESCRIPTION)],
                    lambda o: [f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                               f"{(o.get('spec') or {}).get('replicas', 0)}", age(o)]),
    "Job": ([_col("Status"), _col("Completions"), _col("Duration"), _col("Age", description=AGE_DESCRIPTION)],
            lambda o: [_job_status(o), f"{(o.get('status') or {}).get('succeeded', 0)}/"
                       f"{(o.get('spec') or {}).get('completions', 1)}", "", age(o)]),
}


def _job_status(o: Obj) -> str:
    for condition in (o.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed", "Suspended"):
            return str(condition["type"])
    return "Running"


def _partial(o: Obj) -> Obj:
    meta = {k: v for k, v in (o.get("metadata") or {}).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}


def columns_and_cells(rtype: ResourceType, crd: Obj | None) -> tuple[list[Obj], Callable[[Obj], list[Any]]]:
    name = _col("Name", fmt="name", description=NAME_DESCRIPTION)
    if rtype.custom:
        printer: list[Obj] = []
        for version in ((crd or {}).get("spec") or {}).get("versions") or []:
            if version.get("name") == rtype.version:
                printer = [c for c in version.get("additionalPrinterColumns") or [] if isinstance(c, dict)]
        columns = [name] + [_col(c.get("name", ""), c.get("type", "string"), int(c.get("priority", 0)),
                                 c.get("format", ""), c.get("description", "")) for c in printer]
        has_age = any(c.get("name") == "Age" for c in printer)
        if not has_age:
            columns.append(_col("Age", "date", description=AGE_DESCRIPTION))

        def custom_cells(o: Obj) -> list[Any]:
            cells = []
            for column in printer:
                value = _dig(o, str(column.get("jsonPath", "")))
                cells.append(age(o) if column.get("type") == "date" and value is not None else value)
            return cells + ([] if has_age else [age(o)])

        return columns, custom_cells
    if rtype.kind in PRINTERS:
        extra, cells = PRINTERS[rtype.kind]
        return [name, *extra], cells
    return [name, _col("Created At", "date", description=AGE_DESCRIPTION)], \
        lambda o: [(o.get("metadata") or {}).get("creationTimestamp")]


def table(rtype: ResourceType, objects: list[Obj], crd: Obj | None, resource_version: str,
          headers: bool = True, continue_token: str | None = None) -> Obj:
    columns, cells = columns_and_cells(rtype, crd)
    rows = [{"cells": [(o.get("metadata") or {}).get("name", ""), *cells(o)], "object": _partial(o)}
            for o in objects]
    meta: Obj = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": columns if headers else None, "rows": rows}
