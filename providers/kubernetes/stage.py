"""The workloads stage: plan, apply and observe one environment's manifests on its cluster.

What the stage reads from the `StageContext` (the reconciler resolves `spec` once):

* `spec`: a `WorkloadsInputs`: `manifests`, workload name → rendered manifests (anything with
  `body`, `location`, `document`, as `schema.ManifestLike`); `workloads`, each workload's
  `WorkloadSettings` (namespace, force conflicts, prune, ignore rules); `prune`, the environment's
  `sync.prune`; `inventory` (optional), the inventory the stage last recorded (`apply` returns it in
  `outputs["inventory"]`, a failed apply included); without it the cluster's own copy in
  `tidegate-system` is used;
* `settings["wait_timeout"]` (optional, seconds): after applying, wait for health and fail on
  Degraded or at the timeout (`outputs["health"]` has the environment's and workloads' health);
* the cluster: `credentials["kubeconfig"]` (kubeconfig content, e.g. a Terraform output) or
  `settings["kubeconfig_path"]`.

Every applied object carries Tidegate's tracking labels (`labels.py`: managed-by, environment,
workload); they are left out of every diff and drift, and `watch` selects by them.

A change the API refuses in place (422 naming an immutable field: a Deployment's selector, a
Job's template, a Service's clusterIP, an immutable ConfigMap's data) is planned as `replace`;
`apply` deletes the object (Foreground), waits until it is gone, then creates it. Only where
`may_replace` allows it (see `SAFE_TO_REPLACE` and the `tidegate.dev/replace` annotation);
otherwise the plan fails naming the field, before anything is written.

`apply` validates the whole set with server-side dry runs before the first write (errors name the
manifest's file:line, the field and the API's message), refuses a plan the live state no longer
matches, applies in kind order only what differs (waiting for CRDs to be Established before their
custom resources), prunes by inventory in reverse order, and returns the new inventory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from providers.kubernetes import health as health_rules
from providers.kubernetes import inventory as inv
from providers.kubernetes import labels, snapshot
from providers.kubernetes import memory as remembered
from providers.kubernetes.client import KubeClient, KubeError, PermissionDenied, UnknownKind
from providers.kubernetes.diff import (
    Comparison,
    IgnoreRule,
    compare,
    get_pointer,
    mask,
    normalise,
    render_diff,
)
from providers.kubernetes.memory import Memory, Remembered, live_digest, sent_digest
from providers.kubernetes.ordering import (
    ObjectRef,
    crd_kinds,
    crd_scope_namespaced,
    group_of,
    kind_rank,
    ref_of,
    sort_for_apply,
    sort_for_prune,
    with_namespace,
)
from providers.kubernetes.schema import PlainManifest, validate_manifests
from providers.kubernetes.snapshot import UNSEEN, Snapshot, Unseen
from providers.kubernetes.watch import DriftEvent, LiveWatcher
from providers.stage import (
    Action,
    Change,
    DriftItem,
    LiveHealth,
    Outcome,
    Stage,
    StageContext,
    StageFailed,
    StagePlan,
    StageResult,
    StalePlan,
    Transient,
    digest,
)
from repo_schema.issues import Location

PRUNE_ANNOTATION = "tidegate.dev/prune"
REPLACE_ANNOTATION = "tidegate.dev/replace"
DEFAULT_NAMESPACE = "default"
PARALLEL = 16
"""Requests in flight at once within one wave (dry runs, applies): the API server, not our one
process, bounds how fast a large environment goes."""
SAFE_TO_REPLACE = frozenset({("", "ConfigMap"), ("", "Secret")})
"""Kinds replaced without asking when a change touches an immutable field: an immutable ConfigMap's
or Secret's new data is meant to be a new object (pods that mounted the old one keep running). A
finished Job is replaced too (it re-runs with the new template). Everything else — a running Job,
Services (a LoadBalancer's address would change), workloads (downtime), StatefulSets and PVCs
(data) — needs the manifest's `tidegate.dev/replace: enabled`; `disabled` refuses it everywhere."""


class StageError(StageFailed):
    """The set cannot be planned or applied; `errors` are one line each, with file:line."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@contextmanager
def _contract() -> Iterator[None]:
    """The client's failures as the stage contract's: no answer, 429 and 5xx are Transient (the
    client already retried them), anything else a StageFailed."""
    try:
        yield
    except StageFailed:
        raise
    except KubeError as error:
        if error.status == 0 or error.status == 429 or error.status >= 500:
            raise Transient(str(error)) from error
        raise StageFailed(str(error)) from error
    except (ConnectionError, TimeoutError) as error:
        raise Transient(str(error)) from error


@dataclass
class Prepared:
    """One desired object: its workload, the body to send (namespace injected), where it was written."""

    workload: str
    body: dict[str, Any]
    source: str
    force: bool = False
    rules: list[IgnoreRule] = field(default_factory=list)
    manifest: Any = None
    pending: str = ""
    """Why it cannot be dry-run yet ("namespace web is created by this sync", "CRD ...")."""

    @cached_property
    def ref(self) -> ObjectRef:
        """The object's identity (its body's namespace and name never change once prepared)."""
        return ref_of(self.body)

    @cached_property
    def sent(self) -> str:
        """The digest the memory keeps of what is sent (`memory.sent_digest`)."""
        return sent_digest(self.body, self.force, self.rules)


@dataclass(frozen=True)
class WorkloadSettings:
    """How one workload is applied: where its namespaced objects go, whether server-side apply
    takes fields over from other managers, whether its removed objects are pruned, what the diff
    ignores."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    force: bool = False
    prune: bool = True
    rules: Sequence[IgnoreRule] = ()


@dataclass(frozen=True)
class WorkloadsInputs:
    """The workloads stage's typed input (see the module docstring)."""

    manifests: Mapping[str, Sequence[Any]]
    workloads: Mapping[str, WorkloadSettings] = field(default_factory=dict)
    prune: bool = True
    inventory: inv.Inventory | None = None
    memory: Memory = field(default_factory=dict)
    """What the last apply sent and left per object (`memory.py`; it returned it in
    `outputs["applied"]`): objects it shows unchanged are not dry-run."""

    def settings(self, workload: str) -> WorkloadSettings:
        """A workload's settings, the environment's `sync.prune` included."""
        own = self.workloads.get(workload) or WorkloadSettings(workload)
        return own if self.prune or not own.prune else replace(own, prune=False)


def may_replace(body: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether an object whose change touches immutable fields may be deleted and recreated."""
    annotation = str(((body.get("metadata") or {}).get("annotations") or {}).get(REPLACE_ANNOTATION, ""))
    if annotation in ("enabled", "disabled"):
        return annotation == "enabled"
    ref = ref_of(body)
    if (ref.group, ref.kind) == ("batch", "Job"):
        return any(health_rules.condition(live or {}, kind) == "True" for kind in ("Complete", "Failed"))
    return (ref.group, ref.kind) in SAFE_TO_REPLACE


def _refused_replacements(prepared: Sequence[Prepared], comparisons: Sequence[Comparison]) -> list[str]:
    return [f"{p.source}: {p.ref.kind} {p.ref.namespace + '/' if p.ref.namespace else ''}{p.ref.name}: "
            f"{r.immutable} (set the annotation {REPLACE_ANNOTATION}: enabled on this manifest to delete and "
            "recreate it)"
            for p, r in zip(prepared, comparisons, strict=True)
            if r.action is Action.replace and not may_replace(p.body, r.raw_live)]


def _conflict_error(prepared: Prepared, conflict: str) -> str:
    ref = prepared.ref
    return (f"{prepared.source}: {ref.kind} {ref.namespace}/{ref.name}: {conflict} "
            f"(set forceConflicts on workload {prepared.workload} to take these fields over)")


Item = TypeVar("Item")
T = TypeVar("T")

Applied = tuple[Outcome, str, "dict[str, Any] | None", "str | None"]
"""One write's outcome, log line, the object as the API answered it, and the failure (None)."""


@dataclass
class Step:
    """What apply does with one object: the action, the live object it acts on, and why it is
    refused (a conflict without force, a plan the live object no longer matches)."""

    prepared: Prepared
    action: Action
    live: dict[str, Any] | None
    conflict: str = ""
    immutable: str = ""
    fresh: bool = True
    """Compared again at apply (False: the plan's own result, the live object unchanged since)."""
    stale: str = ""
    seen: str | None = None
    """The live object's digest as the plan saw it (what the memory keeps for an unchanged one)."""


def _waves(steps: Sequence[Step]) -> list[list[Step]]:
    """Consecutive steps of one kind tier (they are in apply order): a tier starts only once the
    one before it is written — namespaces before their objects, CRDs before their resources."""
    waves: list[list[Step]] = []
    rank: int | None = None
    for step in steps:
        tier = kind_rank(str(step.prepared.body.get("kind", "")))
        if tier != rank or step.prepared.body.get("kind") == "CustomResourceDefinition":
            waves.append([])
            rank = tier
        waves[-1].append(step)
    return waves


def _seen_live(prepared: Prepared, live: Mapping[str, Any] | None) -> str | None:
    """The digest of the live object as a comparison sees it (None: there is none)."""
    return live_digest(live, prepared.rules) if live is not None else None


def _seen(prepared: Prepared, result: Comparison) -> str | None:
    """`_seen_live` of the comparison's live object, without normalising it a second time."""
    if result.raw_live is None:
        return None
    if result.seen:
        return result.seen
    if result.live is not None and not result.immutable:  # `live` is the normalised raw_live
        return digest(result.live)
    return _seen_live(prepared, result.raw_live)


def _version(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _source(manifest: Any) -> str:
    location = getattr(manifest, "location", None)
    return f"{location.file}:{location.line}" if location is not None else "<unknown>"


def _api_error(prepared: Prepared, error: KubeError) -> str:
    ref = prepared.ref
    details = error.body.get("details") or {}
    causes = [cause for cause in details.get("causes") or [] if isinstance(cause, Mapping)]
    fields = ", ".join(str(cause.get("field")) for cause in causes if cause.get("field"))
    what = f"{ref.kind} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"
    message = str(error.body.get("message") or error)
    if isinstance(error, PermissionDenied):
        message = f"permission denied (403): {message}"
    return f"{prepared.source}: {what}: " + (f"field {fields}: " if fields else "") + message


class KubernetesStage:
    """`plan`, `apply`, `observe` for the `workloads` stage (DESIGN.md's one stage interface)."""

    name = Stage.WORKLOADS

    def __init__(self, *, connect: Callable[[StageContext[WorkloadsInputs]], KubeClient] | None = None,
                 crd_timeout: float = 60.0, poll_interval: float = 0.05, delete_timeout: float = 120.0,
                 parallel: int = PARALLEL) -> None:
        self._connect = connect or connect_from_context
        self.parallel = parallel
        self.crd_timeout = crd_timeout
        self.poll_interval = poll_interval
        self.delete_timeout = delete_timeout
        """How long a `replace` waits for the old object to be gone (finalizers, Foreground deletion)."""

    # --- preparing the desired set ---------------------------------------------------------------

    def prepare(self, client: KubeClient, context: StageContext[WorkloadsInputs]) -> list[Prepared]:
        """Copies of every manifest with namespaces injected, in apply order; errors raise StageError."""
        inputs = context.spec
        manifests = inputs.manifests
        all_bodies = [m.body for items in manifests.values() for m in items]
        crds = crd_kinds(all_bodies)
        new_namespaces = {str((b.get("metadata") or {}).get("name"))
                          for b in all_bodies if b.get("kind") == "Namespace"}
        live_namespaces: dict[str, bool] | None = None
        scopes: dict[tuple[str, str], bool] = {}
        errors: list[str] = []
        out: list[Prepared] = []
        seen: dict[tuple[str, str, str, str], str] = {}
        for workload, items in manifests.items():
            ws = inputs.settings(workload)
            for manifest in items:
                body = manifest.body
                api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
                pending = ""
                try:
                    if (api_version, kind) not in scopes:
                        scopes[(api_version, kind)] = client.namespaced(api_version, kind)
                    namespaced = scopes[(api_version, kind)]
                except UnknownKind:
                    crd = crds.get((group_of(api_version), kind))
                    if crd is None:
                        errors.append(f"{_source(manifest)}: the cluster serves no {kind} in {api_version} "
                                      "and no CustomResourceDefinition in this set defines it")
                        continue
                    namespaced = crd_scope_namespaced(crd)
                    pending = f"its CustomResourceDefinition {(crd.get('metadata') or {}).get('name')} " \
                              "is created by this sync"
                copied = labels.with_tracking_labels(with_namespace(body, ws.namespace, namespaced),
                                                     context.environment, workload, copy=False)
                namespace = str(copied["metadata"].get("namespace") or "")
                if namespace and not pending:
                    if live_namespaces is None:  # one LIST for all, on the first namespaced object
                        live_namespaces = {str((item.get("metadata") or {}).get("name")): True
                                           for item in client.list("v1", "Namespace")}
                    if not live_namespaces.get(namespace) and namespace in new_namespaces:
                        pending = f"namespace {namespace} is created by this sync"
                prepared = Prepared(workload, copied, _source(manifest), ws.force, list(ws.rules), manifest, pending)
                key = prepared.ref.key
                if key in seen:
                    errors.append(f"{prepared.source}: {prepared.ref.address} is also defined at {seen[key]}")
                    continue
                seen[key] = prepared.source
                out.append(prepared)
        if errors:
            raise StageError(errors)
        return sort_for_apply(out, lambda p: p.body)

    def _compare(self, client: KubeClient, prepared: Prepared, live: Snapshot | None = None,
                 memory: Memory | None = None) -> Comparison:
        """One object against live: no request when the memory shows it unchanged, a dry run
        against the snapshot's copy when the snapshot holds it, else a GET and a dry run."""
        if prepared.pending:
            return Comparison(prepared.ref, normalise(prepared.body, prepared.rules), None)
        remembered = self._remembered(prepared, live, memory)
        if remembered is not None:
            return remembered
        found = live.get(prepared.ref) if live is not None else UNSEEN
        return compare(client, prepared.body, prepared.rules, force=prepared.force, known=found)

    @staticmethod
    def _remembered(prepared: Prepared, live: Snapshot | None, memory: Memory | None) -> Comparison | None:
        """The no-request answer: unchanged, when the memory shows the object as the last apply
        sent and left it (None: it must be compared)."""
        if prepared.pending or live is None or not memory:
            return None
        found = live.get(prepared.ref)
        known = memory.get(prepared.ref.address)
        if isinstance(found, Unseen) or found is None or known is None or known.sent != prepared.sent:
            return None
        if known.version and known.version == _version(found):  # the very object it left
            return Comparison(prepared.ref, None, None, found, seen=known.left)
        same = normalise(found, prepared.rules)
        return Comparison(prepared.ref, same, same, found, seen=known.left) if known.left == digest(same) else None

    def _previous(self, client: KubeClient, context: StageContext[WorkloadsInputs]) -> inv.Inventory:
        stored = context.spec.inventory
        if stored is not None:
            return stored
        return inv.read(client, context.environment)

    def _snapshot(self, client: KubeClient, context: StageContext[WorkloadsInputs], prepared: Sequence[Prepared],
                  previous: inv.Inventory) -> Snapshot:
        """The environment's live objects: one LIST per kind it has or had (`snapshot.py`)."""
        refs = [p.ref for p in prepared if not p.pending] + [ref for refs in previous.values() for ref in refs]
        return snapshot.read(client, {(ref.api_version, ref.kind) for ref in refs},
                             labels.selector(context.environment), {ref.namespace for ref in refs})

    def _stale(self, client: KubeClient, context: StageContext[WorkloadsInputs], prepared: Sequence[Prepared],
               previous: inv.Inventory, live: Snapshot) -> tuple[list[tuple[str, ObjectRef]],
                                                               list[tuple[str, ObjectRef, str]]]:
        """(to delete, left alone with the reason) — previous inventory minus the new desired set."""
        desired = {p.ref.key for p in prepared}
        delete: list[tuple[str, ObjectRef]] = []
        kept: list[tuple[str, ObjectRef, str]] = []
        for workload, refs in previous.items():
            for ref in refs:
                if ref.key in desired:
                    continue
                if not context.spec.settings(workload).prune:
                    kept.append((workload, ref, "prune is off for this workload or environment"))
                    continue
                found: dict[str, Any] | Unseen | None = live.get(ref)
                if isinstance(found, Unseen):
                    try:
                        found = client.get(ref.api_version, ref.kind, ref.name, ref.namespace or None)
                    except UnknownKind:
                        found = None
                if found is None:
                    continue
                annotations = (found.get("metadata") or {}).get("annotations") or {}
                if annotations.get(PRUNE_ANNOTATION) == "disabled":
                    kept.append((workload, ref, f"annotated {PRUNE_ANNOTATION}: disabled"))
                    continue
                delete.append((workload, ref))
        order = {ref: index for index, ref in enumerate(sort_for_prune([ref for _, ref in delete]))}
        delete.sort(key=lambda item: order[item[1]])
        return delete, kept

    # --- the three verbs ---------------------------------------------------------------------------

    def plan(self, context: StageContext[WorkloadsInputs]) -> StagePlan:
        with _contract():
            return self._plan(context)

    def _plan(self, context: StageContext[WorkloadsInputs]) -> StagePlan:
        client = self._connect(context)
        try:
            prepared = self.prepare(client, context)
            previous = self._previous(client, context)
            live = self._snapshot(client, context, prepared, previous)
            comparisons, errors = self._compare_all(client, prepared, live, context.spec.memory, validate=False)
            errors += _refused_replacements(prepared, comparisons)
            if errors:
                raise StageError(errors)
            delete, kept = self._stale(client, context, prepared, previous, live)
        finally:
            client.close()
        changes: list[Change] = []
        for p, result in zip(prepared, comparisons, strict=True):
            text = result.diff
            if result.conflict:
                text = f"# conflict: {result.conflict}\n" + text
            if p.pending:
                text = f"# {p.pending}\n" + text
            changes.append(Change(self.name, p.ref.address, result.action, text))
        for _, ref in delete:
            changes.append(Change(self.name, ref.address, Action.delete, "# pruned: no longer in the desired set\n"))
        live_versions = {p.ref.address: (r.raw_live or {}).get("metadata", {}).get("resourceVersion")
                         for p, r in zip(prepared, comparisons, strict=True)}
        details: dict[str, Any] = {
            "objects": [{"workload": p.workload, "body": p.body, "source": p.source, "force": p.force,
                         "pending": p.pending} for p in prepared],
            "delete": [{"workload": w, **ref.to_dict()} for w, ref in delete],
            "kept": [{"workload": w, "reason": why, **ref.to_dict()} for w, ref, why in kept],
            "previous": inv.to_json(previous),
            "fields": {p.ref.address: r.fields for p, r in zip(prepared, comparisons, strict=True) if r.fields},
            # the bodies apply needs include Secrets as written: store these details encrypted
            "contains_secrets": any(p.body.get("kind") == "Secret" for p in prepared),
        }
        plan_digest = digest({"changes": [(c.address, c.action.value, c.diff) for c in changes],
                              "objects": details["objects"], "delete": details["delete"]})
        # No live_state: the digest already covers every normalised live-versus-desired diff, and the
        # objects' resourceVersions move with every status write (they would void approvals for
        # nothing); apply compares the live objects' digests with `seen` to refuse a stale plan.
        details["live_versions"] = live_versions
        details["seen"] = {p.ref.address: _seen(p, r) for p, r in zip(prepared, comparisons, strict=True)
                           if not p.pending}
        details["conflicts"] = {p.ref.address: r.conflict for p, r in zip(prepared, comparisons, strict=True)
                                if r.conflict}
        return StagePlan(self.name, changes, plan_digest, details=details)

    def _compare_all(self, client: KubeClient, prepared: Sequence[Prepared], live: Snapshot, memory: Memory,
                     *, validate: bool) -> tuple[list[Comparison], list[str]]:
        """Every object compared (up to `parallel` dry runs in flight); errors name file:line."""
        errors: list[str] = []
        offline = [p for p in prepared if p.pending]
        if offline:
            known_crds = [p.body for p in prepared if p.body.get("kind") == "CustomResourceDefinition"]
            for issue in validate_manifests(
                    [p.manifest if p.manifest is not None else PlainManifest(p.body, Location(p.source))
                     for p in offline], crds=known_crds):
                errors.append(str(issue))

        def one(p: Prepared) -> Comparison | str:
            try:
                return self._compare(client, p, live, memory)
            except KubeError as error:
                return _api_error(p, error)

        def quick(p: Prepared) -> Comparison | str | None:
            return self._remembered(p, live, memory)

        comparisons: list[Comparison] = []
        for p, result in zip(prepared, self._map(one, prepared, quick), strict=True):
            if isinstance(result, str):
                errors.append(result)
                comparisons.append(Comparison(p.ref, None, None))
                continue
            if validate and result.conflict and not p.force and result.action is not Action.replace:
                errors.append(_conflict_error(p, result.conflict))
            comparisons.append(result)
        return comparisons, errors

    def _map(self, fn: Callable[[Item], T], items: Sequence[Item],
             quick: Callable[[Item], T | None] | None = None) -> list[T]:
        """`fn` over `items` in order, `parallel` at a time; items `quick` answers without a
        request (not None) stay on this thread (a pool costs more than they do)."""
        answered = [quick(item) if quick is not None else None for item in items]
        slow = [index for index, result in enumerate(answered) if result is None]
        if self.parallel <= 1 or len(slow) <= 1:
            computed = [fn(items[index]) for index in slow]
        else:
            with ThreadPoolExecutor(max_workers=min(self.parallel, len(slow)),
                                    thread_name_prefix="tidegate-kube") as pool:
                computed = list(pool.map(fn, [items[index] for index in slow]))
        for index, result in zip(slow, computed, strict=True):
            answered[index] = result
        return [result for result in answered if result is not None]

    def apply(self, context: StageContext[WorkloadsInputs], plan: StagePlan) -> StageResult:
        with _contract():
            client = self._connect(context)
            try:
                return self._apply(client, context, plan)
            finally:
                client.close()

    def _from_plan(self, context: StageContext[WorkloadsInputs], plan: StagePlan) -> list[Prepared]:
        out = []
        for item in plan.details.get("objects") or []:
            ws = context.spec.settings(str(item["workload"]))
            source = str(item.get("source", ""))
            file, _, line = source.rpartition(":")
            manifest = PlainManifest(item["body"], Location(file or source, int(line) if line.isdigit() else 1))
            out.append(Prepared(str(item["workload"]), dict(item["body"]), source, bool(item.get("force")),
                                list(ws.rules), manifest, str(item.get("pending") or "")))
        return out

    def _recheck(self, client: KubeClient, prepared: Sequence[Prepared], live: Snapshot,
                 plan: StagePlan) -> tuple[list[Step], list[str], list[str]]:
        """Each object's step: the plan's own result where the live object is as the plan saw it
        (no second dry run), a new comparison where it is not. (steps, errors, stale reasons)."""
        planned = {change.address: change for change in plan.changes}
        seen: Mapping[str, str | None] = plan.details.get("seen") or {}
        conflicts: Mapping[str, str] = plan.details.get("conflicts") or {}
        planned_fields: Mapping[str, list[str]] = plan.details.get("fields") or {}
        versions: Mapping[str, str | None] = plan.details.get("live_versions") or {}

        def as_planned(p: Prepared, found: dict[str, Any] | Unseen | None) -> Step | None:
            """The plan's own step when the live object is as it saw it (no request)."""
            address = p.ref.address
            change = planned.get(address)
            if p.pending or change is None:
                return Step(p, change.action if change is not None else Action.create, None)
            if address in seen and not isinstance(found, Unseen) and (
                    (found is not None and _version(found) == versions.get(address))
                    or _seen_live(p, found) == seen[address]):
                return Step(p, change.action, found, conflicts.get(address, ""), fresh=False, seen=seen[address])
            return None

        def one(p: Prepared) -> Step | str:
            address = p.ref.address
            change = planned[address]
            try:
                found: dict[str, Any] | Unseen | None = live.get(p.ref)
                if address in seen and isinstance(found, Unseen) and seen[address] is None:
                    found = client.get(p.body["apiVersion"], p.ref.kind, p.ref.name, p.ref.namespace or None)
                step = as_planned(p, found)
                if step is not None:
                    return step
                result = self._compare(client, p, live)
            except KubeError as error:
                return _api_error(p, error)
            step = Step(p, result.action, result.raw_live, result.conflict, result.immutable)
            if result.action is not change.action:
                step.stale = f"{address}: planned {change.action}, now {result.action}"
            elif result.action is Action.update and result.fields != planned_fields.get(address, []):
                step.stale = (f"{address}: planned changes to {', '.join(planned_fields.get(address, []))}; "
                              f"now to {', '.join(result.fields)}")
            return step

        steps: list[Step] = []
        errors: list[str] = []
        for result in self._map(one, prepared, lambda p: as_planned(p, live.get(p.ref))):
            if isinstance(result, str):
                errors.append(result)
                continue
            steps.append(result)
        for step in steps:
            p = step.prepared
            if step.conflict and not p.force and step.action is not Action.replace:
                errors.append(_conflict_error(p, step.conflict))
            if step.action is Action.replace and not may_replace(p.body, step.live):
                errors.append(f"{p.source}: {p.ref.kind} {p.ref.namespace + '/' if p.ref.namespace else ''}"
                              f"{p.ref.name}: {step.immutable or 'a change to an immutable field'} (set the "
                              f"annotation {REPLACE_ANNOTATION}: enabled on this manifest to delete and recreate it)")
        return steps, errors, [step.stale for step in steps if step.stale]

    def _apply(self, client: KubeClient, context: StageContext[WorkloadsInputs], plan: StagePlan) -> StageResult:
        prepared = self._from_plan(context, plan)
        previous = inv.from_json(plan.details.get("previous"))
        # 1. validate the whole set before the first write
        # objects whose namespace or CRD the plan expected to create may exist by now
        ready: set[str] = set()
        absent: set[str] = set()
        for p in prepared:
            if p.pending and _ready(client, p, ready, absent):
                p.pending = ""
        live = self._snapshot(client, context, prepared, previous)
        steps, errors, stale = self._recheck(client, prepared, live, plan)
        if errors:
            return StageResult(self.name, {p.ref.address: Outcome.skipped for p in prepared}, succeeded=False,
                               error="validation failed, nothing was applied:\n" + "\n".join(errors),
                               log="\n".join(errors))
        # 2. refuse a stale plan
        if stale:
            raise StalePlan("the plan is stale (the cluster changed since it was planned); plan again:\n"
                            + "\n".join(stale))
        # 3. apply in kind order, only what differs: one wave per kind tier, `parallel` at a time
        outcomes: dict[str, Outcome] = {}
        log: list[str] = []
        memory: Memory = {}
        error: str | None = None
        done: set[str] = set()
        written = 0
        if context.on_progress is not None:
            context.on_progress(0, len(steps), "objects")
        for wave in _waves(steps):
            for step, (outcome, line, answered, failure) in zip(wave, self._map_steps(client, wave, ready),
                                                                strict=True):
                address = step.prepared.ref.address
                written += 1
                if context.on_progress is not None:  # counted as each write is answered, failed ones too
                    context.on_progress(written, len(steps), "objects")
                if failure is not None:
                    error = error or failure
                    log.append(failure)
                    continue
                outcomes[address] = outcome
                if outcome is Outcome.created and step.prepared.ref.kind == "Namespace" and not step.prepared.ref.group:
                    ready.add(f"created namespace {step.prepared.ref.name}")
                if line:
                    log.append(line)
                    if context.on_line is not None:  # live, as each wave lands
                        context.on_line(line)
                done.add(address)
                if answered is not None:
                    left = step.seen if outcome is Outcome.unchanged and step.seen else live_digest(
                        answered, step.prepared.rules)
                    memory[address] = Remembered(step.prepared.sent, left, _version(answered))
            if error is not None:
                break
        applied: inv.Inventory = {}
        for p in prepared:
            outcomes.setdefault(p.ref.address, Outcome.skipped)
            if p.ref.address in done:
                applied.setdefault(p.workload, []).append(p.ref)
        # 4. prune (only after a complete apply)
        remaining: inv.Inventory = {}
        if error is not None:
            # keep everything we may own: what we applied plus the whole previous inventory
            for workload, refs in previous.items():
                keys = {r.key for r in applied.get(workload, [])}
                applied.setdefault(workload, []).extend(r for r in refs if r.key not in keys)
        else:
            self._prune(client, plan, outcomes, log, remaining)
        new_inventory: inv.Inventory = {w: list(refs) for w, refs in applied.items()}
        for workload, refs in remaining.items():
            new_inventory.setdefault(workload, []).extend(refs)
        try:
            inv.write(client, context.environment, new_inventory, previous)
        except KubeError as failure:
            log.append(f"inventory not stored in the cluster: {failure}")
            error = error or str(failure)
        outputs: dict[str, Any] = {"inventory": inv.to_json(new_inventory), "applied": remembered.to_json(memory)}
        health: str | None = str(health_rules.Health.DEGRADED) if error is not None else None
        wait_timeout = context.settings.get("wait_timeout")
        if error is None and wait_timeout is not None:
            report = health_rules.wait(client, [(p.workload, p.body) for p in prepared],
                                       timeout=float(wait_timeout), interval=self.poll_interval,
                                       label_selector=labels.selector(context.environment),
                                       stop=context.superseded)
            outputs["health"] = {"environment": str(report.environment),
                                 "workloads": {w: str(h) for w, h in report.workloads.items()}}
            health = str(report.environment)
            if report.cancelled:
                outputs["health"]["cancelled"] = report.cancelled
                log.append(f"health wait cancelled ({report.environment} so far): {report.cancelled}")
            problems = [f"{o.address}: {o.health}: {o.reason}" for o in report.problems()]
            if report.environment is health_rules.Health.DEGRADED or report.timed_out:
                error = (f"not healthy after {float(wait_timeout):g}s:\n" if report.timed_out
                         else "degraded:\n") + "\n".join(problems)
        return StageResult(self.name, outcomes, outputs=outputs, log="\n".join(log), succeeded=error is None,
                           error=error, health=health)

    def _map_steps(self, client: KubeClient, wave: Sequence[Step], ready: set[str]) -> list[Applied]:
        """A wave's outcomes in order: unchanged objects cost nothing, the others are written
        `parallel` at a time."""
        def unchanged(step: Step) -> Applied | None:
            if step.action is Action.no_op and not step.prepared.pending:
                return Outcome.unchanged, "", step.live, None
            return None

        return self._map(lambda step: self._apply_one(client, step, ready), wave, unchanged)

    def _apply_one(self, client: KubeClient, step: Step, ready: set[str]) -> Applied:
        """Write one object (waiting first for what it needs): its outcome, a log line, the object
        as the API answered it, or the failure."""
        p = step.prepared
        address = p.ref.address
        action, live = step.action, step.live
        try:
            if p.pending:
                # its namespace or CRD is new: it was validated offline, the write validates it now
                self._wait_ready(client, p, ready)
                # in a namespace this apply created, nothing of ours can be there yet: no GET
                live = None if f"created namespace {p.ref.namespace}" in ready else client.get(
                    str(p.body["apiVersion"]), p.ref.kind, p.ref.name, p.ref.namespace or None)
                action = Action.create
                if live is not None:  # created by someone else meanwhile: compared like any other
                    result = self._compare(client, replace(p, pending=""))
                    action, live = result.action, result.raw_live
            if action is Action.no_op:
                return Outcome.unchanged, "", live, None
            if action is Action.replace:
                answered = self._replace(client, p, live)
                line = f"{address}: replaced (deleted, then created)"
                outcome = Outcome.created
            else:
                answered = client.apply(p.body, force=p.force)
                outcome = Outcome.created if action is Action.create else Outcome.configured
                line = f"{address}: {outcome}"
            if p.body.get("kind") == "CustomResourceDefinition":
                self._wait_established(client, str(p.body["metadata"]["name"]))
        except (KubeError, TimeoutError) as failure:
            return Outcome.skipped, "", None, (_api_error(p, failure) if isinstance(failure, KubeError)
                                                else f"{p.source}: {failure}")
        return outcome, line, answered, None

    def _prune(self, client: KubeClient, plan: StagePlan, outcomes: dict[str, Outcome], log: list[str],
               remaining: inv.Inventory) -> None:
        """Delete what the plan prunes (reverse kind order); what is still terminating stays in
        `remaining` so the next sync confirms it is gone."""
        for item in plan.details.get("delete") or []:
            ref = ObjectRef.from_dict(item)
            workload = str(item["workload"])
            try:
                live = client.get(ref.api_version, ref.kind, ref.name, ref.namespace or None)
                annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
                if live is not None and annotations.get(PRUNE_ANNOTATION) == "disabled":
                    outcomes[ref.address] = Outcome.skipped
                    continue
                if live is not None:
                    client.delete(ref.api_version, ref.kind, ref.name, ref.namespace or None)
                after = client.get(ref.api_version, ref.kind, ref.name, ref.namespace or None)
            except (KubeError, UnknownKind) as failure:
                log.append(f"{ref.address}: not deleted: {failure}")
                remaining.setdefault(workload, []).append(ref)
                outcomes[ref.address] = Outcome.skipped
                continue
            if after is not None and (after.get("metadata") or {}).get("uid") == (live or {}).get(
                    "metadata", {}).get("uid"):
                remaining.setdefault(workload, []).append(ref)  # terminating: confirm next sync
            outcomes[ref.address] = Outcome.deleted
            log.append(f"{ref.address}: deleted")

    def observe(self, context: StageContext[WorkloadsInputs]) -> list[DriftItem]:
        """Live differences from the desired set, through the same comparison as `plan`."""
        with _contract():
            return self._observe(context)

    def _observe(self, context: StageContext[WorkloadsInputs]) -> list[DriftItem]:
        client = self._connect(context)
        try:
            prepared = self.prepare(client, context)
            live = self._snapshot(client, context, prepared, {})
            comparisons, errors = self._compare_all(client, prepared, live, context.spec.memory, validate=False)
        finally:
            client.close()
        if errors:
            raise StageError(errors)
        return drift_items(comparisons)

    def read_live(self, context: StageContext[WorkloadsInputs], address: str) -> dict[str, Any] | None:
        """The live object at `address` (one of the desired objects: its API version and namespace
        are the desired body's), without managedFields or the last-applied annotation and with
        Secret values masked; None when it is not there. A StageError when no desired object has
        that address."""
        with _contract():
            client = self._connect(context)
            try:
                found = [p.body for p in self.prepare(client, context) if ref_of(p.body).address == address]
                if not found:
                    raise StageError([f"{address}: not an object of this environment's desired state"])
                ref = ref_of(found[0])
                live = client.get(ref.api_version, ref.kind, ref.name, ref.namespace or None)
            finally:
                client.close()
        return shown_live(live)

    def assess(self, context: StageContext[WorkloadsInputs]) -> list[LiveHealth]:
        """Every desired object's health from the live objects (one LIST per kind): Missing when
        it is not there, kstatus otherwise."""
        with _contract():
            report = self.health(context)
        return [LiveHealth(item.address, str(item.health), item.reason, item.workload) for item in report.objects]

    def health(self, context: StageContext[WorkloadsInputs]) -> health_rules.Report:
        """Health of every desired object, per workload and for the environment."""
        client = self._connect(context)
        try:
            prepared = self.prepare(client, context)
            return health_rules.assess(client, [(p.workload, p.body) for p in prepared],
                                       label_selector=labels.selector(context.environment))
        finally:
            client.close()

    def watch(self, context: StageContext[WorkloadsInputs], on_event: Callable[[DriftEvent], None]) -> LiveWatcher:
        """Started live watches on the desired objects; `stop()` it when done (it owns its client)."""
        with _contract():
            client = self._connect(context)
            prepared = self.prepare(client, context)
        rules = [rule for ws in context.spec.workloads.values() for rule in ws.rules]
        return LiveWatcher(client, [p.body for p in prepared], on_event, rules=rules,
                           label_selector=labels.selector(context.environment), close_client=True).start()

    # --- waiting for what later objects need -----------------------------------------------------------

    def _wait_established(self, client: KubeClient, name: str) -> None:
        deadline = time.monotonic() + self.crd_timeout
        while True:
            crd = client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            if crd is not None and health_rules.condition(crd, "Established") == "True":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CustomResourceDefinition {name} not Established after {self.crd_timeout:g}s")
            time.sleep(self.poll_interval)

    def _replace(self, client: KubeClient, prepared: Prepared, live: Mapping[str, Any] | None) -> dict[str, Any]:
        """Delete (dependents first), wait until the object is gone, then create it anew."""
        ref = prepared.ref
        api_version = str(prepared.body.get("apiVersion", ""))
        uid = ((live or {}).get("metadata") or {}).get("uid")
        client.delete(api_version, ref.kind, ref.name, ref.namespace or None, propagation="Foreground")
        deadline = time.monotonic() + self.delete_timeout
        while True:
            live = client.get(api_version, ref.kind, ref.name, ref.namespace or None)
            if live is None or (live.get("metadata") or {}).get("uid") != uid:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"replacing {ref.address}: still not deleted after {self.delete_timeout:g}s")
            time.sleep(self.poll_interval)
        return client.apply(prepared.body, force=prepared.force)

    def _wait_ready(self, client: KubeClient, prepared: Prepared, ready: set[str]) -> None:
        deadline = time.monotonic() + self.crd_timeout
        while not _ready(client, prepared, ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prepared.pending}, but it is not ready after {self.crd_timeout:g}s")
            time.sleep(self.poll_interval)


def _ready(client: KubeClient, prepared: Prepared, ready: set[str], absent: set[str] | None = None) -> bool:
    """Whether what made an object pending (its namespace, its CRD) is now served. `ready` keeps
    what one apply has already found ready, `absent` (before the first write) what it found
    missing: a thousand objects in a new namespace ask once."""
    ref = prepared.ref
    if ref.namespace and f"namespace {ref.namespace}" in ready:
        return True
    if absent is not None and ref.namespace and f"namespace {ref.namespace}" in absent:
        return False
    try:
        client.resource(str(prepared.body.get("apiVersion", "")), ref.kind)
    except UnknownKind:
        return False
    if ref.namespace:
        live = client.get("v1", "Namespace", ref.namespace)
        if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
            if absent is not None:
                absent.add(f"namespace {ref.namespace}")
            return False
        ready.add(f"namespace {ref.namespace}")
    return True


def drift_items(comparisons: Sequence[Comparison]) -> list[DriftItem]:
    """One item per changed field (a missing object is one item at `/`)."""
    items: list[DriftItem] = []
    for result in comparisons:
        if result.action is Action.no_op:
            continue
        text = render_diff(result.ref.address, result.desired, result.live)
        if result.live is None:
            items.append(DriftItem(Stage.WORKLOADS, result.ref.address, "/", "present", None, text))
            continue
        shown_desired, shown_live = mask(result.desired, result.live), mask(result.live, result.desired)
        for pointer in result.fields:
            items.append(DriftItem(Stage.WORKLOADS, result.ref.address, pointer,
                                   get_pointer(shown_desired, pointer), get_pointer(shown_live, pointer), text))
    return items


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def shown_live(live: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A live object as a person may read it: Secret values masked (`diff.mask`), and neither
    managedFields nor the last-applied annotation (which repeats a Secret's data in clear)."""
    shown = mask(live)
    if shown is None:
        return None
    metadata = dict(shown.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = {key: value for key, value in dict(metadata.get("annotations") or {}).items()
                   if key != LAST_APPLIED}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    shown["metadata"] = metadata
    return shown


def connect_from_context(context: StageContext[WorkloadsInputs]) -> KubeClient:
    content = context.credentials.get("kubeconfig")
    if content:
        return KubeClient.connect(content=content)
    path = context.settings.get("kubeconfig_path")
    if path:
        return KubeClient.connect(path=Path(str(path)))
    raise StageError(["no cluster credentials: give credentials['kubeconfig'] or settings['kubeconfig_path']"])
