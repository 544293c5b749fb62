"""The tree of kustomization files a Kustomize workload reads, checked before Kustomize runs.

Kustomize happily loads `../base` directories and, unless told otherwise, remote Git URLs. Before
`kubectl kustomize` is started, every reference in every kustomization reached from the workload
(resources, components, patches, generator files, …) is resolved with the checkout's path rules, so
nothing outside the checkout is ever read and a bad reference is reported at its own line. The
same walk lists every file Kustomize will read (for the render cache key) and the documents that
rendered objects are traced back to (for issue locations).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.rendering.limits import RenderLimits
from reconciler.rendering.paths import RenderProblem, decode, read_limited
from repo_schema.documents import SourceDocument, read_documents
from repo_schema.issues import FieldPath, Issue, Location, format_field
from repo_schema.paths import resolve_inside

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MAX_DEPTH = 32
_URL = re.compile(
    r"^([a-z][a-z0-9+.-]*:"  # any scheme: https:, http:/ (a decoy directory's spelling), git::, ssh:, gh:
    r"|git@"  # scp-like git@host:org/repo
    r"|(github\.com|gitlab\.com|bitbucket\.org)(/|$)"  # hosts Kustomize fetches from without a scheme
    r"|\d{1,3}(\.\d{1,3}){3}(:\d+)?/)",  # an IP address host
    re.IGNORECASE)
"""What Kustomize fetches rather than reads: it parses a reference as a URL or a Git repo spec
*before* it looks for a local file or directory, so a decoy directory named like the URL does not
make it local. These are refused whatever exists in the checkout."""
_HOST_LIKE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}(:\d+)?/", re.IGNORECASE)
"""`example.org/org/repo`: remote if nothing of that name is in the checkout."""


@dataclass(frozen=True)
class Reference:
    """One path written in a kustomization, with where it was written."""

    path: str
    location: Location
    field: str
    kind: str  # "resource" / "plugin" (a file or a kustomization dir), "patch", "file"


@dataclass
class Kustomization:
    """One kustomization file of the tree and the name transforms in force for its resources."""

    directory: str
    file: str
    document: SourceDocument | None
    prefix: str
    suffix: str
    resource_files: list[str] = field(default_factory=list)
    patch_files: list[str] = field(default_factory=list)


@dataclass
class KustomizeTree:
    """Everything reached from a workload's kustomization; `files` is what Kustomize will read."""

    root: Kustomization
    nodes: list[Kustomization] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)


def find_kustomization(root: Path, directory: str) -> str | None:
    """The kustomization file of a directory, checkout-relative, if it has one."""
    for name in KUSTOMIZATION_FILES:
        relative = posixpath.join(directory, name) if directory else name
        if (root / relative).is_file() or (root / relative).is_symlink():
            return relative
    return None


def read_tree(root: Path, directory: str, limits: RenderLimits) -> KustomizeTree:
    """Walk the kustomization tree from `directory`, checking every reference on the way."""
    file = find_kustomization(root, directory)
    if file is None:
        raise ValueError(f"{directory!r} has no kustomization file")
    walker = _Walker(root, limits)
    node = walker.visit(directory, file, prefix="", suffix="", stack=())
    return KustomizeTree(root=node, nodes=walker.nodes, files=walker.files, issues=walker.issues)


class _Walker:
    def __init__(self, root: Path, limits: RenderLimits) -> None:
        self.root = root
        self.limits = limits
        self.nodes: list[Kustomization] = []
        self.files: set[str] = set()
        self.issues: list[Issue] = []

    def visit(
        self, directory: str, file: str, *, prefix: str, suffix: str, stack: tuple[str, ...]
    ) -> Kustomization:
        document = self._read_kustomization(file)
        data = document.data if document is not None and isinstance(document.data, dict) else {}
        node = Kustomization(
            directory=directory,
            file=file,
            document=document,
            prefix=prefix + _text(data.get("namePrefix")),
            suffix=_text(data.get("nameSuffix")) + suffix,
        )
        self.nodes.append(node)
        if document is None:
            return node
        children: list[tuple[str, str, Reference]] = []
        for reference in _references(document, data):
            child = self._check(node, reference)
            if child is not None:
                children.append((*child, reference))
        for child_dir, child_file, reference in children:
            if child_dir in (*stack, directory):
                self._refuse(reference, f"kustomization cycle: {child_dir!r} includes itself")
            elif len(stack) >= MAX_DEPTH:
                self._refuse(reference, f"kustomizations nested deeper than {MAX_DEPTH}")
            else:
                self.visit(child_dir, child_file, prefix=node.prefix, suffix=node.suffix,
                           stack=(*stack, directory))
        return node

    def _read_kustomization(self, file: str) -> SourceDocument | None:
        self.files.add(file)
        try:
            real, _ = resolve_inside(self.root, file)
            text = decode(read_limited(real, file, self.limits.file.max_bytes), file)
        except RenderProblem as error:
            self.issues.append(Issue(Location(file), "<file>", str(error)))
            return None
        documents, issues = read_documents(text, file, limits=self.limits.file)
        self.issues += issues
        if not documents:
            if not issues:
                self.issues.append(Issue(Location(file), "<document>", "empty kustomization"))
            return None
        if not isinstance(documents[0].data, dict):
            self.issues.append(Issue(documents[0].start, "<document>", "a kustomization must be a mapping"))
            return None
        return documents[0]

    def _check(self, node: Kustomization, reference: Reference) -> tuple[str, str] | None:
        """Record a safe reference; return (dir, kustomization file) when it is a directory."""
        if _URL.match(reference.path) or (_HOST_LIKE.match(reference.path)
                                           and not (self.root / node.directory / reference.path).exists()):
            self._refuse(reference, "remote resources are not allowed: rendering reads only the repository")
            return None
        try:
            real, relative = resolve_inside(self.root, reference.path, base=node.directory)
        except RenderProblem as error:
            self._refuse(reference, str(error))
            return None
        if real.is_dir() and reference.kind in ("resource", "plugin"):
            child_file = find_kustomization(self.root, relative)
            if child_file is None:
                self._refuse(reference, f"directory {relative!r} has no kustomization file")
                return None
            return relative, child_file
        if not real.is_file():
            self._refuse(reference, f"{relative!r} does not exist or is not a file")
            return None
        self.files.add(relative)
        if reference.kind == "resource":
            node.resource_files.append(relative)
        elif reference.kind == "patch":
            node.patch_files.append(relative)
        return None

    def _refuse(self, reference: Reference, message: str) -> None:
        self.issues.append(Issue(reference.location, reference.field, message))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _references(document: SourceDocument, data: dict[str, Any]) -> Iterator[Reference]:
    """Every path a kustomization refers to, in the fields Kustomize reads paths from."""

    def ref(path: FieldPath, value: Any, kind: str) -> Iterator[Reference]:
        if isinstance(value, str) and value and "\n" not in value:
            yield Reference(value, document.locate(path), format_field(path), kind)

    for name, kind in (("resources", "resource"), ("bases", "resource"), ("components", "resource"),
                       ("crds", "file"), ("configurations", "file"), ("generators", "plugin"),
                       ("transformers", "plugin"), ("validators", "plugin")):
        for index, entry in _items(data.get(name)):
            yield from ref((name, index), entry, kind)
    for index, entry in _items(data.get("patchesStrategicMerge")):
        if isinstance(entry, str) and ":" not in entry:  # otherwise an inline patch
            yield from ref(("patchesStrategicMerge", index), entry, "patch")
    for name in ("patches", "patchesJson6902", "replacements"):
        for index, entry in _items(data.get(name)):
            if isinstance(entry, dict):
                kind = "patch" if name == "patches" else "file"
                yield from ref((name, index, "path"), entry.get("path"), kind)
    yield from _generator_references(document, data)
    openapi = data.get("openapi")
    if isinstance(openapi, dict):
        yield from ref(("openapi", "path"), openapi.get("path"), "file")


def _generator_references(document: SourceDocument, data: dict[str, Any]) -> Iterator[Reference]:
    for name in ("configMapGenerator", "secretGenerator"):
        for index, entry in _items(data.get(name)):
            if not isinstance(entry, dict):
                continue
            paths: list[tuple[FieldPath, Any]] = []
            for key in ("files", "envs"):
                for position, value in _items(entry.get(key)):
                    source = value.split("=", 1)[-1] if key == "files" and isinstance(value, str) else value
                    paths.append(((name, index, key, position), source))
            paths.append(((name, index, "env"), entry.get("env")))
            for path, value in paths:
                if isinstance(value, str) and value:
                    yield Reference(value, document.locate(path), format_field(path), "file")


def _items(value: Any) -> Iterator[tuple[int, Any]]:
    return enumerate(value) if isinstance(value, list) else iter(())


@dataclass(frozen=True)
class Origin:
    """A place an object of the Kustomize output may come from."""

    kind: str
    name: str
    expected_name: str  # after the enclosing kustomizations' namePrefix/nameSuffix
    namespace: str
    location: Location
    document: SourceDocument | None
    generated: bool = False  # configMapGenerator/secretGenerator: a hash suffix follows


def generator_origins(node: Kustomization) -> list[Origin]:
    """ConfigMaps and Secrets a kustomization generates, placed at their generator entry."""
    if node.document is None or not isinstance(node.document.data, dict):
        return []
    origins: list[Origin] = []
    for field_name, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for index, entry in _items(node.document.data.get(field_name)):
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str):
                origins.append(Origin(kind, name, node.prefix + name + node.suffix,
                                      _text(entry.get("namespace")),
                                      node.document.locate((field_name, index)), None, generated=True))
    return origins


def document_origins(node: Kustomization, documents: list[SourceDocument]) -> list[Origin]:
    """Objects written in a resource file of `node`."""
    origins: list[Origin] = []
    for document in documents:
        data = document.data
        metadata = data.get("metadata") if isinstance(data, dict) else None
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            continue
        name = metadata["name"]
        origins.append(Origin(_text(data.get("kind")), name, node.prefix + name + node.suffix,
                              _text(metadata.get("namespace")), document.start, document))
    return origins
