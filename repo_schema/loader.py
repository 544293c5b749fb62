"""Load a config repo checkout into typed models, reporting every problem at once with its place.

The loader reads `tidegate.yaml` (optional) and `environments/*.yaml`, validates each document
against the models, then checks what no single document can: unique names, `dependsOn` targets
and cycles, paths that exist inside the repo, and Terraform outputs that are referenced but never
declared. It never writes anything.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from repo_schema.documents import SourceDocument, read_documents
from repo_schema.issues import FieldPath, InvalidRepo, Issue, Location
from repo_schema.models import (
    Backend,
    Connection,
    Decryption,
    Environment,
    RepositoryConfig,
    SyncPolicy,
)
from repo_schema.paths import UnsafePath, links_leaving, resolve_inside

REPO_CONFIG_FILE = "tidegate.yaml"
ENVIRONMENTS_DIR = "environments"
_OUTPUT_BLOCK = re.compile(r'^\s*output\s+"([^"]+)"', re.MULTILINE)


@dataclass
class LoadedRepo:
    """A validated config repo: environments in dependency order, and where each was written."""

    root: Path
    config: RepositoryConfig
    environments: dict[str, Environment]
    sources: dict[str, SourceDocument] = field(default_factory=dict)

    def order(self) -> list[str]:
        """Environment names so that every environment comes after those it depends on."""
        return list(self.environments)

    def sync_policy(self, name: str) -> SyncPolicy:
        """The environment's sync fields over the repo defaults over the built-in defaults."""
        merged: dict[str, Any] = {}
        for policy in (self.config.spec.sync, self.environments[name].spec.sync):
            if policy is not None:
                merged.update({key: getattr(policy, key) for key in policy.model_fields_set})
        return SyncPolicy.model_validate(merged)

    def decryption(self, name: str) -> Decryption | None:
        """How the environment's SOPS files are decrypted: its own `decryption`, else the repo's."""
        return self.environments[name].spec.decryption or self.config.spec.decryption

    def backend(self, name: str) -> Backend | None:
        """The environment's Terraform backend: its own, else the repo default, with its key filled."""
        spec = self.environments[name].spec.infrastructure
        backend = (spec.backend if spec else None) or self.config.spec.terraform.backend
        if backend is None or backend.key:
            return backend
        return backend.model_copy(update={"key": f"{backend.key_prefix}{name}/terraform.tfstate"})

    def connection(self, name: str) -> Connection:
        spec = self.environments[name].spec.configuration
        return (spec.connection if spec else None) or self.config.spec.connection or Connection()

    def variables(self, name: str, workload: str | None = None) -> dict[str, Any]:
        """Template variables: repo defaults, then the environment's, then the workload's."""
        env = self.environments[name]
        merged = {**self.config.spec.variables, **env.spec.variables}
        for spec in env.spec.workloads:
            if spec.name == workload:
                merged.update(spec.variables)
        return merged


def load_repo(root: Path) -> LoadedRepo:
    """Load and check a checkout; raise InvalidRepo carrying every issue found."""
    repo, issues = check_repo(root)
    if issues or repo is None:
        raise InvalidRepo(issues)
    return repo


def check_repo(root: Path) -> tuple[LoadedRepo | None, list[Issue]]:
    """Like load_repo, but return the issues; the repo is None when any issue was found."""
    issues: list[Issue] = []
    if not root.is_dir():
        return None, [Issue(Location(str(root)), "<repo>", "not a directory")]
    config = _load_config(root, issues)
    environments, sources, invalid = _load_environments(root, issues)
    issues.extend(_check_cross_references(root, environments, sources, invalid))
    if issues:
        return None, _without_echoes(issues)
    ordered = {name: environments[name] for name in _dependency_order(environments)}
    return LoadedRepo(root, config, ordered, sources), []


def _without_echoes(issues: list[Issue]) -> list[Issue]:
    """Drop the type error that merely repeats an ambiguous-boolean report at the same place."""
    ambiguous = {issue.location for issue in issues if "YAML 1.1" in issue.message}
    return sorted({issue for issue in issues if issue.location not in ambiguous or "YAML 1.1" in issue.message})


def _load_config(root: Path, issues: list[Issue]) -> RepositoryConfig:
    default = RepositoryConfig(api_version="tidegate.dev/v1alpha1", kind="RepositoryConfig")
    path = root / REPO_CONFIG_FILE
    if not path.exists():
        return default
    documents = _read(root, path, issues)
    if len(documents) != 1:
        if documents:
            issues.append(documents[1].issue((), f"{REPO_CONFIG_FILE} must hold exactly one document"))
        return default
    parsed = _validate(RepositoryConfig, documents[0], issues)
    return parsed if isinstance(parsed, RepositoryConfig) else default


def _load_environments(
    root: Path, issues: list[Issue]
) -> tuple[dict[str, Environment], dict[str, SourceDocument], set[str]]:
    """Valid environments by name, their documents, and the names of those that failed to validate
    (so that their dependents are not also reported for naming an "unknown" environment)."""
    environments: dict[str, Environment] = {}
    sources: dict[str, SourceDocument] = {}
    invalid: set[str] = set()
    directory = root / ENVIRONMENTS_DIR
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []
    if not files:
        issues.append(Issue(Location(f"{ENVIRONMENTS_DIR}/"), "<repo>",
                            "no environments: add environments/<name>.yaml (kind: Environment)"))
    for path in files:
        before = len(issues)
        documents = _read(root, path, issues)
        if len(issues) > before and not documents:
            invalid.add(path.stem)  # unparseable: its name is most likely its file's stem
        for document in documents:
            env = _validate(Environment, document, issues)
            if not isinstance(env, Environment):
                invalid.add(_raw_name(document))
                continue
            name = env.metadata.name
            if name in environments:
                first = sources[name].locate(("metadata", "name"))
                issues.append(document.issue(("metadata", "name"),
                                             f"environment {name!r} is already defined at {first}"))
                continue
            environments[name] = env
            sources[name] = document
    return environments, sources, invalid


def _raw_name(document: SourceDocument) -> str:
    metadata = document.data.get("metadata") if isinstance(document.data, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _read(root: Path, path: Path, issues: list[Issue]) -> list[SourceDocument]:
    relative = path.relative_to(root).as_posix()
    try:
        resolve_inside(root.resolve(), relative)
        text = path.read_bytes()
    except UnsafePath as error:
        issues.append(Issue(Location(relative), "<file>", str(error)))
        return []
    except OSError as error:
        issues.append(Issue(Location(relative), "<file>", f"cannot read: {error.strerror}"))
        return []
    documents, problems = read_documents(text, relative)
    issues.extend(problems)
    return documents


def _validate(model: type[BaseModel], document: SourceDocument, issues: list[Issue]) -> BaseModel | None:
    if not isinstance(document.data, dict):
        issues.append(document.issue((), f"expected a mapping (a {model.__name__} document)"))
        return None
    try:
        return model.model_validate(document.data)
    except ValidationError as error:
        issues.extend(_to_issue(document, model, detail) for detail in error.errors(include_url=False))
        return None


def _to_issue(document: SourceDocument, model: type[BaseModel], detail: ErrorDetails) -> Issue:
    path: FieldPath = tuple(part for part in detail["loc"] if isinstance(part, (str, int)))
    if detail["type"] == "extra_forbidden":
        message = f"unknown field {path[-1]!r}" + _suggestion(model, path)
        return document.issue(path, message, key=True)
    if detail["type"] == "missing":
        return document.issue(path, "required field is missing")
    message = detail["msg"].removeprefix("Value error, ")
    if detail["type"] != "value_error" and not isinstance(detail.get("input"), (dict, list)):
        message += f" (got {_short(detail['input'])})"
    return document.issue(path, message)


def _suggestion(model: type[BaseModel], path: FieldPath) -> str:
    """A 'did you mean' for misspelt field names, from the fields the model allows there."""
    candidates: set[str] = set()
    for sub in _models_in(model):
        candidates.update(info.alias or name for name, info in sub.model_fields.items())
    close = difflib.get_close_matches(str(path[-1]), sorted(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _models_in(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> Iterator[type[BaseModel]]:
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    yield model
    for info in model.model_fields.values():
        for arg in _type_args(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _models_in(arg, seen)


def _type_args(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _type_args(arg)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_cross_references(
    root: Path, environments: dict[str, Environment], sources: dict[str, SourceDocument], invalid: set[str]
) -> list[Issue]:
    issues: list[Issue] = []
    for name, env in environments.items():
        document = sources[name]
        for i, target in enumerate(env.spec.depends_on):
            if target not in environments and target not in invalid:
                issues.append(document.issue(("spec", "dependsOn", i),
                                             f"dependsOn names unknown environment {target!r}"))
        issues.extend(_check_paths(root, env, document))
        issues.extend(_check_module_links(root, env, document))
        issues.extend(_check_outputs(root, env, document))
        issues.extend(_check_workload_names(env, document))
    issues.extend(_check_cycles(environments, sources))
    return issues


def _check_paths(root: Path, env: Environment, document: SourceDocument) -> Iterator[Issue]:
    spec = env.spec
    wanted: list[tuple[FieldPath, str, str]] = []
    if spec.infrastructure:
        wanted.append((("spec", "infrastructure", "path"), spec.infrastructure.path, "dir"))
    if spec.configuration:
        wanted.append((("spec", "configuration", "playbook"), spec.configuration.playbook, "file"))
    for i, workload in enumerate(spec.workloads):
        wanted.append((("spec", "workloads", i, "path"), workload.path, "dir"))
    for path, relative, kind in wanted:
        try:
            target, _ = resolve_inside(root.resolve(), relative)
        except UnsafePath as error:
            yield document.issue(path, str(error))
            continue
        if kind == "dir" and not target.is_dir():
            yield document.issue(path, f"directory {relative!r} does not exist in the repo")
        elif kind == "file" and not target.is_file():
            yield document.issue(path, f"file {relative!r} does not exist in the repo")


def _check_module_links(root: Path, env: Environment, document: SourceDocument) -> Iterator[Issue]:
    """Symlinks in the Terraform module that leave it: the workspace copy never follows them."""
    if env.spec.infrastructure is None:
        return
    relative = env.spec.infrastructure.path
    try:
        module, normalized = resolve_inside(root.resolve(), relative)
    except UnsafePath:
        return  # already reported by the path check
    if not module.is_dir():
        return
    for link in links_leaving(module):
        yield document.issue(("spec", "infrastructure", "path"),
                             f"{posixpath.join(normalized, link)!r} is a symlink that leaves the module (or dangles); "
                             "Terraform modules are copied without following such links")


def declared_outputs(module_dir: Path) -> set[str]:
    """Output names declared by a Terraform module, read from its *.tf files without running it."""
    names: set[str] = set()
    for path in sorted(module_dir.glob("*.tf")):
        names.update(_OUTPUT_BLOCK.findall(path.read_text(errors="replace")))
    return names


def _check_outputs(root: Path, env: Environment, document: SourceDocument) -> Iterator[Issue]:
    spec = env.spec
    references: list[tuple[FieldPath, str]] = []
    if spec.configuration and spec.configuration.inventory_from.terraform_output:
        references.append((("spec", "configuration", "inventoryFrom", "terraformOutput"),
                           spec.configuration.inventory_from.terraform_output))
    if spec.cluster and spec.cluster.kubeconfig_from.terraform_output:
        references.append((("spec", "cluster", "kubeconfigFrom", "terraformOutput"),
                           spec.cluster.kubeconfig_from.terraform_output))
    if not references:
        return
    if spec.infrastructure is None:
        for path, _ in references:
            yield document.issue(path, "a terraformOutput reference needs spec.infrastructure")
        return
    try:
        module, _ = resolve_inside(root.resolve(), spec.infrastructure.path)
    except UnsafePath:
        return  # already reported by the path check
    outputs = declared_outputs(module) if module.is_dir() else set()
    for path, output in references:
        if module.is_dir() and output not in outputs:
            known = ", ".join(sorted(outputs)) or "none"
            yield document.issue(path, f"output {output!r} is not declared in {spec.infrastructure.path} "
                                       f"(declared: {known})")


def _check_workload_names(env: Environment, document: SourceDocument) -> Iterator[Issue]:
    seen: set[str] = set()
    for i, workload in enumerate(env.spec.workloads):
        if workload.name in seen:
            yield document.issue(("spec", "workloads", i, "name"), f"duplicate workload name {workload.name!r}")
        seen.add(workload.name)


def _check_cycles(environments: dict[str, Environment], sources: dict[str, SourceDocument]) -> Iterator[Issue]:
    reported: set[frozenset[str]] = set()
    for start in environments:
        cycle = _find_cycle(start, environments)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            closing = cycle[1] if len(cycle) > 1 else cycle[0]
            index = environments[cycle[0]].spec.depends_on.index(closing)
            yield sources[cycle[0]].issue(("spec", "dependsOn", index),
                                          "dependsOn cycle: " + " -> ".join([*cycle, cycle[0]]))


def _find_cycle(start: str, environments: dict[str, Environment]) -> list[str] | None:
    """The first dependsOn path from `start` back to itself, if any."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, trail = stack.pop()
        for target in environments[node].spec.depends_on:
            if target == start:
                return trail
            if target in environments and target not in trail:
                stack.append((target, [*trail, target]))
    return None


def _dependency_order(environments: dict[str, Environment]) -> list[str]:
    """Kahn's algorithm, ties broken by name so the order is stable across runs."""
    remaining = {name: set(env.spec.depends_on) for name, env in environments.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(name for name, needs in remaining.items() if not needs - set(order))
        order.extend(ready)
        for name in ready:
            del remaining[name]
    return order
