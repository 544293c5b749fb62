"""The aiohttp application: Kubernetes API paths, discovery, watch streaming and the `/_sandbox` control endpoint.

Control endpoint (no authentication; loopback only):
- `GET /_sandbox/requests` — the request log (`{"items": [{method, path, query, verb, resource, …}]}`);
  `DELETE` clears it.
- `POST /_sandbox/faults` with a fault rule (see `FaultRule`), `GET` lists them, `DELETE` clears them.
- `POST /_sandbox/watches/drop` ends every open watch stream; `POST /_sandbox/compact` forgets the
  watch history so that resuming from an older resourceVersion answers 410 Expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import yaml
from aiohttp import web

from sandbox.kube import deletion, errors, kubelet, openapi, protobuf, tables
from sandbox.kube.errors import ApiError
from sandbox.kube.patch import APPLY_PATCH, JSON_PATCH, STRATEGIC_PATCH, json_patch, merge_patch, strategic_merge
from sandbox.kube.selectors import field_matcher, label_matcher
from sandbox.kube.store import Obj, Store, Watcher
from sandbox.kube.types import SUBRESOURCE_VERBS, ResourceType

log = logging.getLogger(__name__)

KUBE_MAJOR, KUBE_MINOR, KUBE_GIT_VERSION = "1", "37", "v1.37.1"
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass
class FaultRule:
    """Inject a failure into matching requests; every match field left empty matches anything.

    `status` (e.g. 500, 429, 503) answers a canonical Status with that code (429 with Retry-After);
    `latency` (seconds) delays the request first; `times` limits how many requests the rule hits
    (None: all of them). `drop_watch_after` ends matching watch streams after that many seconds.
    `dry_run` set matches only dry runs (True) or only real writes (False).
    """

    status: int | None = None
    latency: float = 0.0
    retry_after: float | None = None
    times: int | None = None
    method: str | None = None
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    path_prefix: str | None = None
    drop_watch_after: float | None = None
    dry_run: bool | None = None
    hits: int = 0

    def matches(self, entry: RequestInfo) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        checks = ((self.method, entry.method), (self.verb, entry.verb), (self.resource, entry.resource),
                  (self.namespace, entry.namespace), (self.name, entry.name))
        if any(want is not None and want != have for want, have in checks):
            return False
        if self.dry_run is not None and self.dry_run != entry.dry_run:
            return False
        return self.path_prefix is None or entry.path.startswith(self.path_prefix)


@dataclass
class RequestInfo:
    method: str
    path: str
    query: dict[str, str]
    verb: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    code: int = 0
    dry_run: bool = False
    content_type: str = ""
    user_agent: str = ""
    time: float = field(default_factory=time.time)


@dataclass
class ServerState:
    store: Store
    token: str | None
    bookmark_interval: float = 1.0
    requests: list[RequestInfo] = field(default_factory=list)
    max_requests: int = 100_000
    faults: list[FaultRule] = field(default_factory=list)
    watch_queues: set[asyncio.Queue[tuple[str, Obj] | None]] = field(default_factory=set)

    def drop_watches(self) -> int:
        count = 0
        for queue in list(self.watch_queues):
            queue.put_nowait(None)
            count += 1
        return count


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None,
          content_type: str = "application/json") -> web.Response:
    """A body as the API server's JSON serializer writes it: compact, ended by a newline (Go's
    `json.Encoder`), which clients that compare error bodies see."""
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode() + b"\n", status=status,
                        headers={"Content-Type": content_type, **(headers or {})})


def _error(exc: ApiError) -> web.Response:
    return _json(exc.status(), status=exc.code, headers=exc.headers)


class KubeApi:
    """Routes one request to discovery, the store or a watch."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    @property
    def store(self) -> Store:
        return self.state.store

    # ---------------------------------------------------------------- discovery
    def version(self) -> Obj:
        return {
            "major": KUBE_MAJOR, "minor": KUBE_MINOR, "emulationMajor": KUBE_MAJOR, "emulationMinor": KUBE_MINOR,
            "minCompatibilityMajor": KUBE_MAJOR, "minCompatibilityMinor": str(int(KUBE_MINOR) - 1),
            "gitVersion": KUBE_GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.25.4",
            "compiler": "gc", "platform": "linux/amd64",
        }

    def api_versions(self, host: str) -> Obj:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}

    def _group(self, name: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    def api_groups(self) -> Obj:
        groups = [self._group(n, v) for n, v in self.store.registry.groups().items() if n]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, name: str) -> Obj:
        versions = self.store.registry.groups().get(name)
        if not versions or not name:
            raise errors.no_such_resource()
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(name, versions)}

    def resource_list(self, group: str, version: str) -> Obj:
        types = self.store.registry.in_group_version(group, version)
        if not types:
            raise errors.no_such_resource()
        resources: list[Obj] = []
        for rtype in types:
            entry: Obj = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                          "kind": rtype.kind, "verbs": list(rtype.verbs)}
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            for sub, kind, verbs in _subresources(rtype):
                sub_entry: Obj = {"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                                  "kind": kind, "verbs": list(verbs)}
                if sub == "scale":
                    sub_entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                resources.append(sub_entry)
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": types[0].group_version,
                "resources": resources}

    def aggregated(self, legacy: bool) -> Obj:
        items: list[Obj] = []
        for name, versions in self.store.registry.groups().items():
            if bool(name) == legacy:
                continue
            version_entries: list[Obj] = []
            for version in versions:
                resources: list[Obj] = []
                for rtype in self.store.registry.in_group_version(name, version):
                    entry: Obj = {
                        "resource": rtype.plural,
                        "responseKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
                        "scope": "Namespaced" if rtype.namespaced else "Cluster",
                        "singularResource": rtype.singular, "verbs": list(rtype.verbs),
                    }
                    if rtype.short_names:
                        entry["shortNames"] = list(rtype.short_names)
                    if rtype.categories:
                        entry["categories"] = list(rtype.categories)
                    subs = []
                    for sub, sub_kind, verbs in _subresources(rtype):
                        kind = ({"group": "autoscaling", "version": "v1", "kind": "Scale"} if sub == "scale"
                                else {"group": rtype.group, "version": rtype.version, "kind": sub_kind})
                        subs.append({"subresource": sub, "responseKind": kind, "verbs": list(verbs)})
                    if subs:
                        entry["subresources"] = subs
                    resources.append(entry)
                version_entries.append({"version": version, "resources": resources, "freshness": "Current"})
            items.append({"metadata": {"name": name, "creationTimestamp": None}, "versions": version_entries})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {}, "items": items}

    # ---------------------------------------------------------------- resource requests
    def parse(self, info: RequestInfo) -> tuple[ResourceType, str | None, str, str] | None:
        """(type, namespace or None for all, name, subresource) of a resource path; None for discovery."""
        parts = [p for p in info.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise errors.no_such_resource()
        rtype = self.store.registry.find(group, version, plural)
        if rtype is None:
            raise errors.no_such_resource()
        if sub and sub not in rtype.subresources and not kubelet.serves(rtype, sub):
            raise errors.no_such_resource()
        if namespace is not None and not rtype.namespaced:
            raise errors.no_such_resource()
        info.group, info.version, info.resource, info.name, info.subresource = group, version, plural, name, sub
        info.namespace = namespace or ""
        return rtype, namespace, name, sub

    @staticmethod
    def verb_of(method: str, name: str, query: dict[str, str]) -> str:
        if method == "GET":
            if name:
                return "get"
            return "watch" if query.get("watch") in ("true", "1") else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())

    async def body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = request.content_type
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(raw)
            except (protobuf.ProtobufError, UnicodeDecodeError, KeyError) as exc:
                raise errors.unsupported_media_type(ctype, ["application/json", "application/yaml"]) from exc
        if ctype not in ("application/json", "application/yaml", "text/plain", "application/octet-stream") \
                and not ctype.endswith(("+json", "+yaml")):
            raise errors.unsupported_media_type(ctype, ["application/json", "application/yaml"])
        try:
            if "yaml" in ctype and not raw.lstrip().startswith(b"{"):
                # libyaml when present: PyYAML's pure-Python loader costs ~2 ms per apply body
                return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            return json.loads(raw)  # JSON is YAML too, and clients send their apply bodies as JSON
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from exc

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        query = info.query
        parsed = self.parse(info)
        if parsed is None:
            raise errors.no_such_resource()
        rtype, namespace, name, sub = parsed
        verb = info.verb
        if kubelet.serves(rtype, sub):
            return kubelet.answer(self.store, rtype, namespace or "", name, sub, request.method, query)
        _check_dry_run_query(verb, query.get("dryRun"))
        if sub == "scale":
            return await self.scale(request, rtype, namespace or "", name, verb, info.dry_run)
        if sub == "status" and verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
        as_table = tables.wants_table(request.headers.get("Accept", "")) and not sub
        if verb == "get":
            obj = self.store.get(rtype, namespace or "", name)
            if as_table:
                return _json(tables.table(rtype, [obj], self.store.crd_of(rtype), obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if verb in ("list", "watch"):
            matches = self._matcher(rtype, query)
            if verb == "watch":
                return await self.watch(request, rtype, namespace, matches, as_table)
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
            listed = self.store.list(rtype, namespace, matches, limit, query.get("continue") or None)
            if as_table:
                meta = listed["metadata"]
                return _json(tables.table(rtype, listed["items"], self.store.crd_of(rtype), meta["resourceVersion"],
                                          continue_token=meta.get("continue")))
            return _json(listed)
        validation = query.get("fieldValidation") or "Warn"
        manager = query.get("fieldManager") or ""
        if len(manager) > 128:
            raise errors.invalid(rtype, name, [errors.FieldError("Too long", "fieldManager",
                                                                 "may not be more than 128 characters")])
        default_manager = manager or request.headers.get("User-Agent", "unknown").split("/", 1)[0] or "unknown"
        if verb == "create":
            if name or (rtype.namespaced and namespace is None):
                raise errors.method_not_allowed()
            body = await self.body(request)
            created = self.store.create(rtype, namespace or "", body, info.dry_run, validation, default_manager)
            return self._written(created, 201)
        if verb == "update":
            body = await self.body(request)
            return self._written(self.store.update(rtype, namespace or "", name, body, info.dry_run, sub or None,
                                                   validation, default_manager))
        if verb == "patch":
            ctype = request.content_type
            body = await self.body(request)
            if ctype == APPLY_PATCH:
                force = query.get("force") in ("true", "1")
                code, applied = self.store.apply(rtype, namespace or "", name, body, info.dry_run, sub or None,
                                                 validation, manager, force)
                return self._written(applied, code)
            return self._written(self.store.patch(rtype, namespace or "", name, ctype, body, info.dry_run,
                                                  sub or None, validation, default_manager))
        if verb == "delete":
            options = delete_options(await self.body(request), query)
            deletion.validate(options)
            code, answer = self.store.delete(rtype, namespace or "", name, "All" in options.get("dryRun", []), options)
            return self._written(answer, code)
        if verb == "deletecollection":
            if rtype.namespaced and namespace is None:
                raise errors.method_not_allowed()
            options = delete_options(await self.body(request), query)
            deletion.validate(options)
            matches = self._matcher(rtype, query)
            deleted = []
            for obj in self.store.select(rtype, namespace, matches):
                meta = obj["metadata"]
                deleted.append(self.store.render(rtype, obj))
                self.store.delete(rtype, meta.get("namespace", ""), meta["name"], "All" in options.get("dryRun", []),
                                  dict(options))
            return _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                          "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted})
        raise errors.method_not_allowed()

    def _written(self, obj: Obj, status: int = 200) -> web.Response:
        response = _json(obj, status=status)
        for warning in self.store.warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    def _matcher(self, rtype: ResourceType, query: dict[str, str]) -> Callable[[Obj], bool]:
        labels = label_matcher(query.get("labelSelector"))
        fields = field_matcher(query.get("fieldSelector"), rtype)
        return lambda obj: labels(obj) and fields(obj)

    # ---------------------------------------------------------------- scale subresource
    async def scale(self, request: web.Request, rtype: ResourceType, namespace: str, name: str, verb: str,
                    dry_run: bool) -> web.Response:
        current = self.store.get(rtype, namespace, name)
        spec_path = rtype.scale_paths.get("specReplicasPath", ".spec.replicas").lstrip(".").split(".")
        status_path = rtype.scale_paths.get("statusReplicasPath", ".status.replicas").lstrip(".").split(".")

        def dig(obj: Any, path: list[str]) -> Any:
            for part in path:
                obj = obj.get(part) if isinstance(obj, dict) else None
            return obj

        def as_scale(obj: Obj) -> Obj:
            meta = obj["metadata"]
            selector = dig(obj, ["spec", "selector", "matchLabels"]) or {}
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                      "creationTimestamp") if k in meta},
                    "spec": {"replicas": dig(obj, spec_path) or 0},
                    "status": {"replicas": dig(obj, status_path) or 0,
                               "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))}}

        if verb == "get":
            return _json(as_scale(current))
        body = await self.body(request)
        scale = as_scale(current)
        if verb == "update":
            new_scale = body
        elif verb == "patch":
            ctype = request.content_type
            if ctype == JSON_PATCH:
                new_scale = json_patch(scale, body)
            elif ctype == STRATEGIC_PATCH:
                new_scale = strategic_merge(scale, body)
            else:
                new_scale = merge_patch(scale, body)
        else:
            raise errors.method_not_allowed()
        replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
        wanted_rv = ((new_scale or {}).get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        updated = json.loads(json.dumps(current))
        target = updated
        for part in spec_path[:-1]:
            target = target.setdefault(part, {})
        target[spec_path[-1]] = replicas
        manager = request.query.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/", 1)[0]
        result = self.store.update(rtype, namespace, name, updated, dry_run, "scale", "Ignore", manager)
        return _json(as_scale(result))

    # ---------------------------------------------------------------- watch
    async def watch(self, request: web.Request, rtype: ResourceType, namespace: str | None,
                    matches: Callable[[Obj], bool], as_table: bool = False) -> web.StreamResponse:
        query = dict(request.query)
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        except ValueError:
            raise errors.bad_request(f'invalid timeoutSeconds "{query["timeoutSeconds"]}"') from None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        initial_events = query.get("sendInitialEvents") in ("true", "1")
        since = query.get("resourceVersion", "")
        start = 0
        if since not in ("", "0"):
            try:
                start = int(since)
            except ValueError:
                raise errors.bad_request(f'invalid resource version "{since}"') from None
        drop_after = next((f.drop_watch_after for f in self.state.faults if f.drop_watch_after is not None
                           and f.matches(RequestInfo("GET", request.path, query, "watch", resource=rtype.plural,
                                                     namespace=namespace or ""))), None)

        queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

        def deliver(kind: str, obj: Obj) -> None:
            queue.put_nowait((kind, obj))

        watcher = Watcher(rtype.group, rtype.plural, namespace, matches, deliver)
        store = self.store
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        def out(obj: Obj) -> Obj:
            # Objects of an older version of a CRD are served as the version the watch asked for.
            return {**obj, "apiVersion": rtype.group_version, "kind": rtype.kind}

        headers_sent = False

        async def send(kind: str, obj: Obj) -> None:
            nonlocal headers_sent
            if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = tables.table(rtype, [obj], store.crd_of(rtype), str(obj["metadata"].get("resourceVersion", "")),
                                   headers=not headers_sent)
                headers_sent = True
            line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            await response.write(line.encode())

        ident = store.add_watcher(watcher)
        self.state.watch_queues.add(queue)
        try:
            if since in ("", "0") or initial_events:
                # A snapshot taken with the watcher already registered: later changes arrive through the queue.
                snapshot_rv = store.rv
                for obj in [store.render(rtype, o) for o in store.select(rtype, namespace, matches)]:
                    await send("ADDED", obj)
                if initial_events:
                    await send("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.group_version, "metadata": {
                        "resourceVersion": str(snapshot_rv),
                        "annotations": {"k8s.io/initial-events-end": "true"}}})
            else:
                if not store.replay(start, watcher):
                    error = errors.expired(f"too old resource version: {start} ({store.compacted_rv + 1})")
                    await send("ERROR", error.status())
                    return response
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            if drop_after is not None:
                deadline = min(deadline, loop.time() + drop_after) if deadline is not None \
                    else loop.time() + drop_after
            next_bookmark = loop.time() + self.state.bookmark_interval
            while True:
                # Wake at least every second to notice a client that went away (aiohttp does not cancel
                # handlers on disconnect), so dead watches do not keep queueing events.
                wait = min(1.0, max(0.0, next_bookmark - loop.time())) if bookmarks else 1.0
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wait = min(wait, remaining)
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    if bookmarks and loop.time() >= next_bookmark and (deadline is None or deadline > loop.time()):
                        await send("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.group_version,
                                                "metadata": {"resourceVersion": str(store.rv)}})
                        next_bookmark = loop.time() + self.state.bookmark_interval
                    continue
                if item is None:
                    break
                await send(item[0], out(item[1]))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.remove_watcher(ident)
            self.state.watch_queues.discard(queue)
        return response


def build_app(state: ServerState) -> web.Application:
    api = KubeApi(state)

    async def control(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/_sandbox/requests":
            if request.method == "DELETE":
                state.requests.clear()
                return _json({"cleared": True})
            return _json({"items": [asdict(r) for r in state.requests]})
        if path == "/_sandbox/faults":
            if request.method == "DELETE":
                state.faults.clear()
                return _json({"cleared": True})
            if request.method == "POST":
                rule = FaultRule(**{k: v for k, v in (await request.json()).items() if k != "hits"})
                state.faults.append(rule)
                return _json(asdict(rule), status=201)
            return _json({"items": [asdict(f) for f in state.faults]})
        if path == "/_sandbox/watches/drop" and request.method == "POST":
            return _json({"dropped": state.drop_watches()})
        if path == "/_sandbox/compact" and request.method == "POST":
            state.store.compact()
            return _json({"compactedResourceVersion": str(state.store.compacted_rv)})
        return _json(errors.no_such_resource().status(), status=404)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/_sandbox/"):
            return await control(request)
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        info = RequestInfo(request.method, path, query, content_type=request.content_type,
                           user_agent=request.headers.get("User-Agent", ""))
        is_resource = path.startswith(("/api/", "/apis/")) and path.count("/") >= (3 if path.startswith("/api/") else 4)
        info.verb = KubeApi.verb_of(request.method, _name_in(path), query) if is_resource else request.method.lower()
        info.dry_run = await _dry_run_requested(request, query)
        state.requests.append(info)
        if len(state.requests) > state.max_requests:
            del state.requests[: len(state.requests) - state.max_requests]
        try:
            response = await _serve(request, info)
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:  # a bug in the emulator: answer as the API server answers a panic
            log.exception("kube sandbox: %s %s failed", request.method, path)
            response = _error(ApiError(500, "InternalError", f"Internal error occurred: {exc!r}",
                                       {"causes": [{"message": repr(exc)}]}))
        info.code = response.status
        return response

    async def _dry_run_requested(request: web.Request, query: dict[str, str]) -> bool:
        """Whether the client asked for a dry run, known before anything else runs, so that the log
        says so even of a request an injected fault refuses: `dryRun=All` in the query, or for a DELETE
        in its DeleteOptions (the body when there is one, where kubectl puts it; the query otherwise)."""
        if request.method != "DELETE":
            return query.get("dryRun") == "All"
        try:
            options = delete_options(await api.body(request), query)  # aiohttp keeps the bytes for the handler
        except ApiError:
            return False
        return "All" in (options.get("dryRun") or [])

    async def _serve(request: web.Request, info: RequestInfo) -> web.StreamResponse:
        path = info.path
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":  # written raw (`WriteRawJSON`): indented, no newline
            return web.json_response(api.version(), dumps=lambda value: json.dumps(value, indent=2))
        if state.token is not None:
            auth = request.headers.get("Authorization", "")
            if auth != f"Bearer {state.token}":
                raise errors.unauthorized()
        with contextlib.suppress(ApiError):
            api.parse(info)
        for rule in state.faults:
            if rule.drop_watch_after is None and rule.matches(info):
                rule.hits += 1
                if rule.latency:
                    await asyncio.sleep(rule.latency)
                if rule.status:
                    raise errors.injected(rule.status, rule.retry_after)
                break
        accept = request.headers.get("Accept", "")
        aggregated = "as=APIGroupDiscoveryList" in accept and "v=v2;" in accept.replace(" ", "") + ";"
        if request.method == "GET":
            if path == "/api":
                if aggregated:
                    return _json(api.aggregated(legacy=True), content_type=AGGREGATED_V2)
                return _json(api.api_versions(request.host))
            if path == "/apis":
                if aggregated:
                    return _json(api.aggregated(legacy=False), content_type=AGGREGATED_V2)
                return _json(api.api_groups())
            if path == "/api/v1":
                return _json(api.resource_list("", "v1"))
            parts = path.strip("/").split("/")
            if parts[0] == "apis" and len(parts) == 2:
                return _json(api.api_group(parts[1]))
            if parts[0] == "apis" and len(parts) == 3:
                return _json(api.resource_list(parts[1], parts[2]))
            if parts[0] == "openapi":
                return self_openapi(parts)
        return await api.handle(request, info)

    def self_openapi(parts: list[str]) -> web.Response:
        registry = state.store.registry
        if parts[:2] != ["openapi", "v3"]:
            raise errors.no_such_resource()
        builtin = {(t.group, t.version): True for t in registry.all() if not t.custom}
        if len(parts) == 2:
            return _json(openapi.index(registry.groups(), builtin))
        rest = parts[2:]
        if rest[:1] == ["api"] and len(rest) == 2:
            group, version = "", rest[1]
        elif rest[:1] == ["apis"] and len(rest) == 3:
            group, version = rest[1], rest[2]
        else:
            raise errors.no_such_resource()
        if not builtin.get((group, version)):
            raise errors.no_such_resource()
        return web.Response(body=openapi.document_bytes(group, version, registry.in_group_version(group, version)),
                            headers={"Content-Type": "application/json"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def _subresources(rtype: ResourceType) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, kind, verbs) of the type's subresources as discovery lists them, sorted by name."""
    found: list[tuple[str, str, tuple[str, ...]]] = [(sub, rtype.kind, SUBRESOURCE_VERBS) for sub in rtype.subresources]
    if rtype.group == "" and rtype.kind == "Pod":
        found += [(sub, kind, verbs) for sub, (kind, verbs, _methods) in kubelet.SUBRESOURCES.items()]
    return sorted(found)


_OPTIONS_KIND = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def _check_dry_run_query(verb: str, value: str | None) -> None:
    """`dryRun` accepts only "All"; the write handlers refuse anything else as invalid options (reads
    ignore the parameter; DELETE takes it through its DeleteOptions)."""
    kind = _OPTIONS_KIND.get(verb)
    if kind is None or value is None or value == "All":
        return
    raise errors.invalid_options(kind, [errors.FieldError("Unsupported value", "dryRun", 'supported values: "All"',
                                                          errors.GoLiteral(f'[]string{{"{value}"}}'))])


def delete_options(body: Any, query: dict[str, str]) -> dict[str, Any]:
    """DeleteOptions as the DELETE handler reads them: from the body when there is one (then the query
    is not read at all), from the query otherwise."""
    if body is not None:
        if not isinstance(body, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        return body
    options: dict[str, Any] = {}
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "orphanDependents" in query:
        options["orphanDependents"] = query["orphanDependents"].lower() in ("true", "1", "t")
    if "dryRun" in query:
        options["dryRun"] = [query["dryRun"]]
    if query.get("gracePeriodSeconds", "").lstrip("-").isdigit():
        options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
    return options


def _name_in(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        rest = rest[2:]
    return rest[1] if len(rest) > 1 else ""

