"""The emulator's one stateful store: objects, the global resourceVersion, the watch history, and write rules.

Every method runs on the server's event loop thread; nothing here blocks or locks. The rules are
the API server's generic registry rules: server-owned metadata, resourceVersion preconditions,
generation bumped only by spec changes, the status subresource split, no-op writes that change
nothing, `dryRun`, finalizers and deletionTimestamp, namespace termination and ownerReference
garbage collection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.kube import deletion, errors, ssa
from sandbox.kube.clone import clone
from sandbox.kube.defaults import apply_defaults, initial_status
from sandbox.kube.errors import ApiError, FieldError
from sandbox.kube.fields import check_fields, check_types
from sandbox.kube.patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, json_patch, merge_patch, strategic_merge
from sandbox.kube.types import ResourceType, TypeRegistry, types_from_crd
from sandbox.kube.validation import validate

Obj = dict[str, Any]
Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    group: str
    plural: str
    namespace: str
    obj: Obj
    old: Obj | None = None


@dataclass
class Watcher:
    group: str
    plural: str
    namespace: str | None
    matches: Callable[[Obj], bool]
    deliver: Callable[[str, Obj], None]
    closed: bool = False

    def offer(self, event: Event) -> None:
        if self.closed or event.group != self.group or event.plural != self.plural:
            return
        if self.namespace is not None and event.namespace != self.namespace:
            return
        new_match = self.matches(event.obj)
        if event.type == "MODIFIED":
            old_match = event.old is not None and self.matches(event.old)
            if new_match and old_match:
                self.deliver("MODIFIED", event.obj)
            elif new_match:
                self.deliver("ADDED", event.obj)
            elif old_match:
                self.deliver("DELETED", event.obj)
        elif new_match:
            self.deliver(event.type, event.obj)


_ESTABLISHED: Obj = {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted"}
_INSTALLING: Obj = {"type": "Established", "status": "False", "reason": "Installing",
                    "message": "the initial names have been accepted"}


def _established(crd: Obj) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _is_crd(rtype: ResourceType) -> bool:
    return rtype.kind == "CustomResourceDefinition" and rtype.group == "apiextensions.k8s.io"


@dataclass
class Store:
    history_size: int = 1000
    registry: TypeRegistry = field(default_factory=TypeRegistry)
    rv: int = 1000
    objects: dict[Key, Obj] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=deque)
    compacted_rv: int = 0
    _watchers: dict[int, Watcher] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # of the last write, for Warning headers
    listeners: list[Callable[[Event], None]] = field(default_factory=list)  # simulated controllers
    crd_delay: float = 0.0
    """Seconds from a CRD's creation to `Established` (its types served); 0: at once."""

    def __post_init__(self) -> None:
        ns_type = self.registry.find("", "v1", "namespaces")
        assert ns_type is not None
        for name in SYSTEM_NAMESPACES:
            self.create(ns_type, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ----------------------------------------------------------------- events and watches
    def _emit(self, event: Event) -> None:
        self.history.append(event)
        while len(self.history) > self.history_size:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        for watcher in list(self._watchers.values()):
            watcher.offer(event)
        for listener in list(self.listeners):
            listener(event)

    def compact(self) -> None:
        """Forget the whole event history: every resume from an older resourceVersion now gets 410."""
        self.compacted_rv = self.rv
        self.history.clear()

    def add_watcher(self, watcher: Watcher) -> int:
        ident = id(watcher)
        self._watchers[ident] = watcher
        return ident

    def remove_watcher(self, ident: int) -> None:
        self._watchers.pop(ident, None)

    def open_watchers(self) -> list[Watcher]:
        return list(self._watchers.values())

    def replay(self, since: int, watcher: Watcher) -> bool:
        """Offer the watcher every retained event after `since`; False when history no longer reaches it."""
        if since < self.compacted_rv:
            return False
        for event in list(self.history):
            if event.rv > since:
                watcher.offer(event)
        return True

    # ----------------------------------------------------------------- helpers
    def _key(self, rtype: ResourceType, namespace: str, name: str) -> Key:
        return (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)

    def render(self, rtype: ResourceType, obj: Obj) -> Obj:
        result = clone(obj)
        result["apiVersion"] = rtype.group_version
        result["kind"] = rtype.kind
        return {"apiVersion": result.pop("apiVersion"), "kind": result.pop("kind"), **result}

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def get_stored(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.objects.get(self._key(rtype, namespace, name))

    def namespace_phase(self, name: str) -> str | None:
        stored = self.objects.get(("", "namespaces", "", name))
        if stored is None:
            return None
        return str((stored.get("status") or {}).get("phase", "Active"))

    def _check_body(self, rtype: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON or YAML object")
        # Like the API server's decoder, a body without kind/apiVersion takes them from the URL.
        kind = body.get("kind") or rtype.kind
        api_version = body.get("apiVersion") or rtype.group_version
        if api_version and api_version != rtype.group_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                     f"version ({rtype.group_version})")
        if kind != rtype.kind:
            raise errors.bad_request(f'{kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                                     f'no kind "{kind}" is registered for version "{rtype.group_version}"')
        if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
            raise errors.bad_request("metadata must be an object")
        return clone(body)

    def _known_fields(self, rtype: ResourceType, obj: Obj, mode: str) -> Obj:
        crd = self.crd_of(rtype)
        check_types(rtype, obj, crd)
        pruned, warnings = check_fields(rtype, obj, mode, crd)
        self.warnings.extend(warnings)
        return pruned

    def _check_namespace(self, rtype: ResourceType, namespace: str, meta: Obj) -> None:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        meta["namespace"] = namespace

    # ----------------------------------------------------------------- reads
    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        stored = self.get_stored(rtype, namespace, name)
        if stored is None:
            raise errors.not_found(rtype, name)
        return self.render(rtype, stored)

    def select(self, rtype: ResourceType, namespace: str | None, matches: Callable[[Obj], bool]) -> list[Obj]:
        found = [
            obj for (group, plural, ns, _name), obj in sorted(self.objects.items())
            if group == rtype.group and plural == rtype.plural and (namespace is None or ns == namespace)
            and matches(obj)
        ]
        return found

    def list(self, rtype: ResourceType, namespace: str | None, matches: Callable[[Obj], bool],
             limit: int | None = None, continue_token: str | None = None) -> Obj:
        list_rv = self.rv
        start_after: list[str] | None = None
        if continue_token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                list_rv = int(decoded["rv"])
                start_after = [str(part) for part in decoded["start"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request(f"continue key is not valid: {exc}") from exc
            if list_rv < self.compacted_rv:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start "
                    "a new list without the continue parameter, or use the continue token in this response to "
                    "retrieve the remainder of the results. Continuing with the provided token results in an "
                    "inconsistent list - objects that were created, modified, or deleted between the time the first "
                    "chunk was returned and now may show up in the list.")
        items = self.select(rtype, namespace, matches)
        if start_after is not None:
            items = [o for o in items if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > start_after]
        metadata: Obj = {"resourceVersion": str(list_rv)}
        if limit is not None and limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            token = {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = rest
        rendered = []
        for obj in items:
            item = self.render(rtype, obj)
            if not rtype.custom:
                # Typed lists of built-in kinds are encoded without each item's kind and apiVersion.
                item.pop("kind", None)
                item.pop("apiVersion", None)
            rendered.append(item)
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version, "metadata": metadata,
                "items": rendered}

    # ----------------------------------------------------------------- writes
    def create(self, rtype: ResourceType, namespace: str, body: Any, dry_run: bool = False,
               field_validation: str = "Warn", manager: str = "", applied: Obj | None = None) -> Obj:
        self.warnings = []
        obj = self._known_fields(rtype, self._check_body(rtype, body), field_validation)
        meta: Obj = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        self._check_namespace(rtype, namespace, meta)
        if rtype.namespaced:
            phase = self.namespace_phase(namespace)
            if phase is None:
                raise errors.namespace_not_found(namespace)
            if phase == "Terminating":
                raise errors.forbidden(rtype, meta.get("name", ""),
                                       f"unable to create new content in namespace {namespace} because it is being "
                                       "terminated")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(_GENERATE_CHARS, k=5))
            else:
                raise errors.invalid(rtype, "", [FieldError("Required value", "metadata.name",
                                                            "name or generateName is required")])
        name = str(meta["name"])
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        for server_owned in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(server_owned, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rtype.has_status:
            status = initial_status(rtype, obj)
            if status is None:
                obj.pop("status", None)
            else:
                obj["status"] = status
        apply_defaults(rtype, obj, None)
        validate(rtype, obj, None)
        meta.pop("managedFields", None)
        if manager:
            schema = ssa.object_schema(rtype, self.crd_of(rtype))
            stamp = now()
            if applied is not None:
                entries = ssa.apply(rtype, schema, None, applied, manager, True, "", stamp)["metadata"]["managedFields"]
            else:
                entries = ssa.record_update(rtype, schema, None, obj, manager, "", stamp)
            if entries:
                meta["managedFields"] = entries
        if self.get_stored(rtype, namespace, name) is not None:
            raise errors.already_exists(rtype, name)
        if _is_crd(rtype):
            self._crd_status(obj)
        obj["apiVersion"] = rtype.group_version
        obj["kind"] = rtype.kind
        if dry_run:
            return self.render(rtype, obj)
        meta["resourceVersion"] = self._next_rv()
        self.objects[self._key(rtype, namespace, name)] = obj
        if _is_crd(rtype):
            self._serve_crd(name, obj)
        self._emit(Event(self.rv, "ADDED", rtype.group, rtype.plural, meta.get("namespace", ""),
                         self.render(rtype, obj)))
        return self.render(rtype, obj)

    def update(self, rtype: ResourceType, namespace: str, name: str, body: Any, dry_run: bool = False,
               subresource: str | None = None, field_validation: str = "Warn", manager: str = "") -> Obj:
        self.warnings = []
        obj = self._known_fields(rtype, self._check_body(rtype, body), field_validation)
        meta: Obj = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({name})")
        old = self.get_stored(rtype, namespace, name)
        if old is None:
            raise errors.not_found(rtype, name)
        meta["name"] = name
        self._check_namespace(rtype, namespace, meta)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        return self._commit(rtype, old, obj, dry_run, subresource, manager)

    def patch(self, rtype: ResourceType, namespace: str, name: str, content_type: str, patch: Any,
              dry_run: bool = False, subresource: str | None = None, field_validation: str = "Warn",
              manager: str = "") -> Obj:
        self.warnings = []
        old = self.get_stored(rtype, namespace, name)
        if old is None:
            raise errors.not_found(rtype, name)
        base = self.render(rtype, old)
        if content_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise errors.bad_request("merge patch must be a JSON object")
            patched = merge_patch(base, patch)
        elif content_type == JSON_PATCH:
            patched = json_patch(base, patch)
        elif content_type == STRATEGIC_PATCH:
            if rtype.custom:
                raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE_PATCH,
                                                                   "application/apply-patch+yaml"])
            if not isinstance(patch, dict):
                raise errors.bad_request("strategic merge patch must be a JSON object")
            patched = strategic_merge(base, patch)
        else:
            raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH,
                                                               "application/apply-patch+yaml"])
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        meta = patched.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("the patch removed metadata")
        if meta.get("name") != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                                     f"({name})")
        if rtype.namespaced and meta.get("namespace") != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        patched.setdefault("kind", rtype.kind)
        patched.setdefault("apiVersion", rtype.group_version)
        obj = self._known_fields(rtype, self._check_body(rtype, patched), field_validation)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        return self._commit(rtype, old, obj, dry_run, subresource, manager)

    def apply(self, rtype: ResourceType, namespace: str, name: str, body: Any, dry_run: bool = False,
              subresource: str | None = None, field_validation: str = "Strict", manager: str = "",
              force: bool = False) -> tuple[int, Obj]:
        """Server-side apply: (201, created) or (200, the merged object)."""
        self.warnings = []
        if not manager:
            raise errors.bad_request("PATCH, PUT and apply requests need a fieldManager: the fieldManager is "
                                     "required for apply requests")
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise errors.bad_request("invalid object type: apply requests need apiVersion and kind")
        applied = self._known_fields(rtype, self._check_body(rtype, body), field_validation)
        meta = applied.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({name})")
        applied.setdefault("metadata", {})["name"] = name
        old = self.get_stored(rtype, namespace, name)
        if old is None:
            if subresource:
                raise errors.not_found(rtype, name)
            warnings = list(self.warnings)
            created = self.create(rtype, namespace, clone(applied), dry_run, "Ignore", manager, applied)
            self.warnings = warnings
            return 201, created
        schema = ssa.object_schema(rtype, self.crd_of(rtype))
        try:
            merged = ssa.apply(rtype, schema, self.render(rtype, old), applied, manager, force, subresource or "",
                               now())
        except ssa.Conflict as conflict:
            causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {ssa.manager_label(entry)}",
                       "field": ssa.path_string(path)} for entry, path in conflict.conflicts]
            raise ApiError(409, "Conflict", ssa.conflict_message(conflict.conflicts), {"causes": causes}) from None
        obj = self._check_body(rtype, merged)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return 200, self._commit(rtype, old, obj, dry_run, subresource, manager, applied=True)

    def crd_of(self, rtype: ResourceType) -> Obj | None:
        if not rtype.custom:
            return None
        return self.objects.get(("apiextensions.k8s.io", "customresourcedefinitions", "",
                                 f"{rtype.plural}.{rtype.group}"))

    def _commit(self, rtype: ResourceType, old: Obj, obj: Obj, dry_run: bool, subresource: str | None,
                manager: str = "", applied: bool = False) -> Obj:
        old_meta = old["metadata"]
        managed = (obj.get("metadata") or {}).get("managedFields") if applied else None
        if subresource == "status":
            status = obj.get("status")
            obj = clone(old)
            if status is None:
                obj.pop("status", None)
            else:
                obj["status"] = status
        elif rtype.has_status:
            if "status" in old:
                obj["status"] = clone(old["status"])
            else:
                obj.pop("status", None)
        meta = obj["metadata"]
        for owned in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                      "resourceVersion"):
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        if "deletionTimestamp" in old_meta:
            # Finalizers may only be removed from an object being deleted, never added.
            added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
            if added:
                raise errors.invalid(rtype, old_meta["name"], [FieldError(
                    "Forbidden", "metadata.finalizers", f"no new finalizers can be added if the object is being "
                    f"deleted, found new finalizers {json.dumps(added)}")])
        if meta.get("finalizers") == []:
            meta.pop("finalizers")
        for empty_map in ("labels", "annotations"):
            if meta.get(empty_map) == {}:
                meta.pop(empty_map)
        obj["apiVersion"] = rtype.group_version
        obj["kind"] = rtype.kind
        apply_defaults(rtype, obj, old)
        validate(rtype, obj, self.render(rtype, old))
        if applied:
            if managed:
                meta["managedFields"] = managed
            else:
                meta.pop("managedFields", None)
        elif old_meta.get("managedFields"):
            meta["managedFields"] = old_meta["managedFields"]
        else:
            meta.pop("managedFields", None)
        if manager and not applied:
            entries = ssa.record_update(rtype, ssa.object_schema(rtype, self.crd_of(rtype)), self.render(rtype, old),
                                        obj, manager, subresource or "", now())
            if entries:
                meta["managedFields"] = entries
            else:
                meta.pop("managedFields", None)
        if rtype.tracks_generation and _spec_of(obj, rtype) != _spec_of(old, rtype):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        old_cmp = {**old, "apiVersion": rtype.group_version, "kind": rtype.kind}
        if obj == old_cmp:
            return self.render(rtype, old)  # a no-op write: no new resourceVersion, no watch event
        if _is_crd(rtype) and subresource is None:
            self._crd_status(obj)
        name = meta["name"]
        namespace = meta.get("namespace", "")
        if dry_run:
            return self.render(rtype, obj)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, namespace, name)
            return self.render(rtype, obj)
        meta["resourceVersion"] = self._next_rv()
        self.objects[self._key(rtype, namespace, name)] = obj
        if _is_crd(rtype):
            self._serve_crd(name, obj)
        self._emit(Event(self.rv, "MODIFIED", rtype.group, rtype.plural, namespace, self.render(rtype, obj),
                         self.render(rtype, old)))
        return self.render(rtype, obj)

    def _crd_status(self, crd: Obj) -> None:
        """What the naming controller writes: accepted names, NamesAccepted, and Established as it was
        (a new CRD is `Established=False/Installing` until `crd_delay` passes, unless the delay is 0).

        A condition keeps its lastTransitionTime while its status stays (SetCRDCondition does so);
        otherwise every update would rewrite the status.
        """
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        if names.get("kind") and not names.get("singular"):
            names["singular"] = str(names["kind"]).lower()
        if names.get("kind") and not names.get("listKind"):
            names["listKind"] = f"{names['kind']}List"
        storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
        previous = {str(c.get("type")): c for c in (crd.get("status") or {}).get("conditions") or []
                    if isinstance(c, dict)}
        stamp = now()
        accepted = previous.get("NamesAccepted") or {}
        established = previous.get("Established") or (_ESTABLISHED | {"lastTransitionTime": stamp}
                                                      if self.crd_delay <= 0 else _INSTALLING)
        crd["status"] = {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True",
                 "lastTransitionTime": accepted.get("lastTransitionTime") if accepted.get("status") == "True"
                 else stamp, "reason": "NoConflicts", "message": "no conflicts found"},
                {"lastTransitionTime": stamp, **established},
            ],
            "storedVersions": storage,
        }

    def _serve_crd(self, name: str, crd: Obj) -> None:
        """Serve the CRD's types once it is Established (as the API server's CRD handler and
        discovery do: until then its resources answer 404); schedule establishing otherwise."""
        if _established(crd):
            self.registry.set_crd(name, types_from_crd(crd))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # while the store is being prepared, before the server runs
            self._establish(name)
            return
        loop.call_later(self.crd_delay, self._establish, name)

    def _establish(self, name: str) -> None:
        """The establishing controller: Established=True through the status subresource."""
        rtype = self.registry.find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        stored = self.get_stored(rtype, "", name) if rtype is not None else None
        if rtype is None or stored is None or (stored.get("metadata") or {}).get("deletionTimestamp"):
            return
        current = self.render(rtype, stored)
        conditions = [c for c in (current.get("status") or {}).get("conditions") or []
                      if c.get("type") != "Established"]
        if _established(current):
            return
        conditions.append({**_ESTABLISHED, "lastTransitionTime": now()})
        self.update(rtype, "", name, {**current, "status": {**current.get("status", {}), "conditions": conditions}},
                    subresource="status", field_validation="Ignore", manager="kube-apiserver")

    # ----------------------------------------------------------------- deletes
    def delete(self, rtype: ResourceType, namespace: str, name: str, dry_run: bool = False,
               options: Obj | None = None) -> tuple[int, Obj]:
        """Delete one object as its registry does: (HTTP code, body); see `deletion` for the rules.

        What controllers would finish later (garbage collection, namespace and CRD cleanup) is done
        before returning, so the answer is the object as the registry marked it, then it is gone.
        """
        stored = self.get_stored(rtype, namespace, name)
        if stored is None:
            raise errors.not_found(rtype, name)
        options = options or {}
        deletion.check_preconditions(rtype, stored["metadata"], options)
        warnings = deletion.warnings(rtype, options)
        if rtype.kind == "Namespace" and rtype.group == "":
            deleted, answer = False, self._delete_namespace(rtype, stored, options, dry_run)
        elif _is_crd(rtype) and "deletionTimestamp" not in stored["metadata"]:
            deleted, answer = False, self._delete_crd(rtype, stored, dry_run)
        else:
            deleted, answer = self._delete_object(rtype, stored, options, dry_run)
        self.warnings = warnings  # after the cascade, whose own deletes reset them
        return deletion.code(deleted, options), answer

    def _delete_object(self, rtype: ResourceType, stored: Obj, options: Obj, dry_run: bool) -> tuple[bool, Obj]:
        """The generic registry's Delete: (deleted now, answer)."""
        meta = stored["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        finalizers = deletion.finalizers_after(rtype, list(meta.get("finalizers") or []), options)
        if not finalizers and not deletion.is_graceful(rtype):
            gone = self.render(rtype, stored) if dry_run else self._remove(rtype, namespace, name)
            return True, deletion.answer(rtype, gone)
        marked = self._mark_deleting(rtype, stored, finalizers, dry_run)
        if finalizers:
            if not dry_run:
                self._run_gc_finalizer(rtype, self._key(rtype, namespace, name))
            return False, marked
        if not dry_run:
            self._remove(rtype, namespace, name)
        return True, deletion.answer(rtype, marked)

    def _mark_deleting(self, rtype: ResourceType, stored: Obj, finalizers: Sequence[str], dry_run: bool,
                       grace: bool = True) -> Obj:
        """Write the object as being deleted (`markAsDeleting`): deletionTimestamp (kept if set), a
        zero grace period, generation bumped on the first mark, the finalizers given. No-op writes
        keep the resourceVersion and emit nothing."""
        marked = clone(stored)
        meta = marked["metadata"]
        if "deletionTimestamp" not in meta:
            meta["deletionTimestamp"] = now()
            if meta.get("generation"):
                meta["generation"] = int(meta["generation"]) + 1
        if grace:
            meta["deletionGracePeriodSeconds"] = 0
        if finalizers:
            meta["finalizers"] = list(finalizers)
        else:
            meta.pop("finalizers", None)
        return self._write_marked(rtype, stored, marked, dry_run)

    def _write_marked(self, rtype: ResourceType, stored: Obj, marked: Obj, dry_run: bool) -> Obj:
        if marked == stored or dry_run:
            return self.render(rtype, marked)
        meta = marked["metadata"]
        meta["resourceVersion"] = self._next_rv()
        self.objects[self._key(rtype, meta.get("namespace", ""), meta["name"])] = marked
        self._emit(Event(self.rv, "MODIFIED", rtype.group, rtype.plural, meta.get("namespace", ""),
                         self.render(rtype, marked), self.render(rtype, stored)))
        return self.render(rtype, marked)

    def _run_gc_finalizer(self, rtype: ResourceType, key: Key) -> None:
        """The garbage collector's part, done at once: orphan or delete the dependents, then drop
        its finalizer (which deletes the object when no other finalizer remains)."""
        stored = self.objects.get(key)
        finalizers = list((stored or {}).get("metadata", {}).get("finalizers") or [])
        for finalizer, policy in ((deletion.ORPHAN, "Orphan"), (deletion.FOREGROUND, "Foreground")):
            if stored is not None and finalizer in finalizers:
                self._collect_dependents(stored["metadata"]["uid"], policy)
                self._release_finalizer(rtype, key, finalizer)

    def _release_finalizer(self, rtype: ResourceType, key: Key, finalizer: str) -> None:
        stored = self.objects.get(key)
        if stored is None:
            return
        released = clone(stored)
        meta = released["metadata"]
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
        if meta["finalizers"]:
            self._write_marked(rtype, stored, released, False)
        else:
            self._remove(rtype, key[2], key[3])

    def _remove(self, rtype: ResourceType, namespace: str, name: str, policy: str = "Background") -> Obj:
        """Remove the object (a DELETED event) and collect what depended on it; returns the object as it
        was last stored, which is what a registry that returns deleted objects answers."""
        key = self._key(rtype, namespace, name)
        stored = self.objects.pop(key)
        last = self.render(rtype, stored)
        stored["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(Event(self.rv, "DELETED", rtype.group, rtype.plural, key[2], self.render(rtype, stored)))
        if _is_crd(rtype):
            self._remove_crd_objects(stored)
            self.registry.remove_crd(name)
        self._collect_dependents(stored["metadata"]["uid"], policy)
        if key[2] and self.namespace_phase(key[2]) == "Terminating":
            self._finish_namespace(key[2])
        return last

    def _type_of_key(self, key: Key) -> ResourceType | None:
        for rtype in self.registry.all():
            if rtype.group == key[0] and rtype.plural == key[1]:
                return rtype
        return None

    def _remove_crd_objects(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        rtype = self._type_of_key((group, plural, "", ""))
        for key in [k for k in self.objects if k[0] == group and k[1] == plural]:
            if rtype is not None:
                self._remove(rtype, key[2], key[3])
            else:
                self.objects.pop(key, None)

    def _collect_dependents(self, owner_uid: str, policy: str) -> None:
        """Garbage collection: orphan or delete the objects that the removed owner owned."""
        live_uids = {o["metadata"]["uid"] for o in self.objects.values()}
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == owner_uid for r in refs):
                continue
            rtype = self._type_of_key(key)
            if rtype is None:
                continue
            if policy == "Orphan":
                old = self.render(rtype, obj)
                remaining = [r for r in refs if r.get("uid") != owner_uid]
                if remaining:
                    obj["metadata"]["ownerReferences"] = remaining
                else:
                    obj["metadata"].pop("ownerReferences")
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self._emit(Event(self.rv, "MODIFIED", rtype.group, rtype.plural, key[2], self.render(rtype, obj), old))
            elif not any(r.get("uid") in live_uids for r in refs if r.get("uid") != owner_uid) \
                    and key in self.objects:
                try:
                    self.delete(rtype, key[2], key[3], options={"propagationPolicy": policy})
                except ApiError:
                    continue

    def _delete_namespace(self, rtype: ResourceType, stored: Obj, options: Obj, dry_run: bool) -> Obj:
        """The namespace registry's Delete: the first one marks the namespace Terminating (no grace
        period) and answers it; the namespace controller's work (deleting the content, in the
        background) is done here at once, and the namespace goes when its content is gone."""
        if "deletionTimestamp" in stored["metadata"]:
            return self.render(rtype, stored)
        marked = clone(stored)
        meta = marked["metadata"]
        meta["deletionTimestamp"] = now()
        marked["status"] = {**(marked.get("status") or {}), "phase": "Terminating"}
        finalizers = deletion.namespace_finalizers(list(meta.get("finalizers") or []), options)
        if finalizers:
            meta["finalizers"] = finalizers
        answer = self._write_marked(rtype, stored, marked, dry_run)
        if dry_run:
            return answer
        name = meta["name"]
        for key in sorted(k for k in self.objects if k[2] == name):
            content_type = self._type_of_key(key)
            if content_type is not None and key in self.objects:
                self.delete(content_type, key[2], key[3], options={"propagationPolicy": "Background"})
        self._finish_namespace(name)
        return answer

    def _delete_crd(self, rtype: ResourceType, stored: Obj, dry_run: bool) -> Obj:
        """The CRD registry's first Delete: deletionTimestamp, the cleanup finalizer and a Terminating
        condition, answered as such; the finalizer's work (deleting every custom resource) is done
        here at once, then the CRD goes unless other finalizers hold it."""
        marked = clone(stored)
        meta = marked["metadata"]
        meta["deletionTimestamp"] = now()
        if deletion.CRD_CLEANUP not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), deletion.CRD_CLEANUP]
        status = marked.setdefault("status", {})
        status["conditions"] = [*[c for c in status.get("conditions") or [] if c.get("type") != "Terminating"],
                                deletion.crd_terminating(now())]
        answer = self._write_marked(rtype, stored, marked, dry_run)
        if not dry_run:
            self._remove_crd_objects(marked)
            self._release_finalizer(rtype, self._key(rtype, "", meta["name"]), deletion.CRD_CLEANUP)
        return answer

    def _finish_namespace(self, name: str) -> None:
        if any(k[2] == name for k in self.objects):
            return
        ns_type = self.registry.find("", "v1", "namespaces")
        if ns_type is not None and ("", "namespaces", "", name) in self.objects:
            self._remove(ns_type, "", name)


def _spec_of(obj: Obj, rtype: ResourceType) -> Obj:
    """What changes metadata.generation: everything but metadata (and status, when it is a subresource)."""
    skip = {"metadata", "apiVersion", "kind"}
    if rtype.has_status or not rtype.custom:
        skip.add("status")
    return {k: v for k, v in obj.items() if k not in skip}

