"""What a DELETE answers, per kind, as the API server's registries decide it.

The generic registry (`k8s.io/apiserver/pkg/registry/generic/registry/store.go`) answers:
- the object marked for deletion (`deletionTimestamp`, `deletionGracePeriodSeconds: 0`, generation
  bumped) while finalizers remain, whatever the kind — including the `orphan` and
  `foregroundDeletion` finalizers it adds itself for those propagation policies;
- once the object is gone, the deleted object for the kinds whose registry sets
  `ReturnDeletedObject`, and a `Success` Status (`details.kind` being the *resource*) for the others,
  custom resources included.
Namespaces and CRDs have registries of their own (the first DELETE marks them, and answers them).
The HTTP code is 200, and 202 only when the object stays and the client sent `orphanDependents: false`.
"""

from __future__ import annotations

from typing import Any

from sandbox.kube import errors
from sandbox.kube.errors import FieldError, GoLiteral
from sandbox.kube.types import ResourceType

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
POLICIES = ("Foreground", "Background", "Orphan")

# (group, kind) of the built-in registries that set ReturnDeletedObject (1.37). The namespace registry
# wraps its store, so the OpenAPI spec (and the typed clients) say Status, yet the answer is the object.
RETURNS_DELETED_OBJECT = frozenset({
    ("", "Namespace"), ("", "Pod"), ("", "PodTemplate"), ("", "PersistentVolume"), ("", "PersistentVolumeClaim"),
    ("", "ResourceQuota"), ("", "Service"), ("", "ServiceAccount"),
    ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"), ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"), ("storage.k8s.io", "VolumeAttributesClass"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "DeviceTaintRule"), ("resource.k8s.io", "ResourceClaim"),
    ("resource.k8s.io", "ResourceClaimTemplate"), ("resource.k8s.io", "ResourceSlice"),
})
# Strategies whose default garbage-collection policy orphans dependents, for backward compatibility of
# these group-versions (replicationcontroller and job strategies' DefaultGarbageCollectionPolicy).
ORPHANS_BY_DEFAULT = frozenset({("", "v1", "ReplicationController"), ("batch", "v1", "Job")})
# The event strategy says Unsupported: no GC finalizer is ever added to an Event.
NOT_COLLECTED = frozenset({("", "Event"), ("events.k8s.io", "Event")})
# Registries with a Delete of their own (first DELETE marks the object) and older precondition wording.
OWN_DELETE = frozenset({("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")})
JOB_WARNING = ("child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to "
               "remove them or set propagationPolicy=Orphan to suppress this warning")


def returns_object(rtype: ResourceType) -> bool:
    return not rtype.custom and (rtype.group, rtype.kind) in RETURNS_DELETED_OBJECT


def is_graceful(rtype: ResourceType) -> bool:
    """Pods have a graceful-deletion strategy: even a pod deleted at once (no node) is first written
    with its deletionTimestamp, and that is the object the DELETE answers."""
    return rtype.group == "" and rtype.kind == "Pod"


def validate(options: Obj) -> None:
    """`ValidateDeleteOptions`, run by the handler before the object is even looked up."""
    problems: list[FieldError] = []
    policy = options.get("propagationPolicy")
    if options.get("orphanDependents") is not None and policy is not None:
        problems.append(FieldError("Invalid value", "propagationPolicy",
                                   "orphanDependents and deletionPropagation cannot be both set", policy))
    if policy is not None and policy not in POLICIES:
        problems.append(FieldError("Unsupported value", "propagationPolicy",
                                   'supported values: "Foreground", "Background", "Orphan", "nil"', policy))
    dry_run = options.get("dryRun") or []
    if not isinstance(dry_run, list) or any(value != "All" for value in dry_run):
        shown = ", ".join(f'"{v}"' for v in dry_run) if isinstance(dry_run, list) else f'"{dry_run}"'
        problems.append(FieldError("Unsupported value", "dryRun", 'supported values: "All"',
                                   GoLiteral(f"[]string{{{shown}}}")))
    if problems:
        raise errors.invalid_options("DeleteOptions", problems)


def check_preconditions(rtype: ResourceType, meta: Obj, options: Obj) -> None:
    """The UID and resourceVersion preconditions, worded by the registry that checks them."""
    preconditions = options.get("preconditions") or {}
    name = str(meta.get("name", ""))
    own_registry = (rtype.group, rtype.kind) in OWN_DELETE
    for field_name, key in (("UID", "uid"), ("ResourceVersion", "resourceVersion")):
        wanted = preconditions.get(key)
        if wanted and wanted != meta.get(key):
            failed = errors.precondition_failed_storage if own_registry else errors.precondition_failed
            raise failed(rtype, name, field_name, str(wanted), str(meta.get(key, "")))


def policy_of(options: Obj) -> str | None:
    """The propagation the request asks for; the deprecated `orphanDependents: false` is Background."""
    if options.get("orphanDependents") is not None:
        return "Orphan" if options["orphanDependents"] else "Background"
    policy = options.get("propagationPolicy")
    return str(policy) if policy else None


def finalizers_after(rtype: ResourceType, finalizers: list[str], options: Obj) -> list[str]:
    """`deletionFinalizersForGarbageCollection`: the object's finalizers once the request's
    propagation policy (or the kind's default, or a GC finalizer already there) is applied."""
    if (rtype.group, rtype.kind) in NOT_COLLECTED:
        return list(finalizers)
    policy = policy_of(options)
    if policy is None:
        if ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        elif (rtype.group, rtype.version, rtype.kind) in ORPHANS_BY_DEFAULT:
            policy = "Orphan"
    kept = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    if policy == "Orphan":
        kept.append(ORPHAN)
    elif policy == "Foreground":
        kept.append(FOREGROUND)
    return kept


def namespace_finalizers(finalizers: list[str], options: Obj) -> list[str]:
    """The namespace registry's own rule for the GC finalizers of a namespace being deleted."""
    orphan, foreground = ORPHAN in finalizers, FOREGROUND in finalizers
    if options.get("orphanDependents") is not None:
        orphan, foreground = bool(options["orphanDependents"]), not options["orphanDependents"]
    elif options.get("propagationPolicy") is not None:
        orphan, foreground = options["propagationPolicy"] == "Orphan", options["propagationPolicy"] == "Foreground"
    kept = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    return kept + [ORPHAN] * orphan + [FOREGROUND] * foreground


def crd_terminating(stamp: str) -> Obj:
    return {"type": "Terminating", "status": "True", "lastTransitionTime": stamp, "reason": "InstanceDeletionPending",
            "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon"}


def warnings(rtype: ResourceType, options: Obj) -> list[str]:
    """The Job registry warns when its orphaning default applies unasked."""
    asked = options.get("propagationPolicy") is not None or options.get("orphanDependents") is not None
    if (rtype.group, rtype.version, rtype.kind) == ("batch", "v1", "Job") and not asked:
        return [JOB_WARNING]
    return []


def answer(rtype: ResourceType, gone: Obj) -> Obj:
    """What the registry's `finalizeDelete` answers for an object that is gone."""
    if returns_object(rtype):
        return gone
    meta = gone["metadata"]
    details: Obj = {"name": meta["name"]}
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = rtype.plural  # the registry puts the resource here, not the kind
    details["uid"] = meta["uid"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def code(deleted: bool, options: Obj) -> int:
    """200, or 202 when the object stays and the (deprecated) orphanDependents was sent as false."""
    return 202 if not deleted and options.get("orphanDependents") is False else 200
