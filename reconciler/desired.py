"""What each environment should be, rendered from one checkout: the input of every plan.

`check_checkout` is the one place that turns a checkout into desired state, so `tidegate
validate`, `tidegate render`, previews and syncs agree on what a revision means. It loads and
checks the repo, renders every workload (Kustomize, plain YAML, Jinja2), validates every manifest
offline against the Kubernetes schemas, and renders the Terraform and Ansible inputs. It collects
every issue before answering; nothing is written into the checkout.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from providers.kubernetes.schema import validate_manifests
from reconciler.rendering.cache import RenderCache, render_workload_cached
from reconciler.rendering.encrypted import schema_view, unencrypted_by_rule
from reconciler.rendering.inputs import render_extra_vars, render_tfvars
from reconciler.rendering.manifest import Manifest
from reconciler.rendering.workload import RenderedWorkload
from repo_schema.issues import Issue
from repo_schema.loader import LoadedRepo, check_repo


@dataclass
class DesiredState:
    """One environment at one revision: per stage, exactly what its provider will be given."""

    environment: str
    workloads: dict[str, RenderedWorkload] = field(default_factory=dict)
    namespaces: dict[str, str | None] = field(default_factory=dict)
    infrastructure_path: str | None = None
    tfvars: str | None = None
    playbook: str | None = None
    extra_vars: str | None = None

    def manifests(self) -> list[Manifest]:
        return [manifest for rendered in self.workloads.values() for manifest in rendered.manifests]

    def manifests_yaml(self) -> str:
        """A YAML stream of every manifest, each headed by its workload and source file:line."""
        parts: list[str] = []
        for name, rendered in self.workloads.items():
            for manifest in rendered.manifests:
                body = yaml.safe_dump(manifest.body, sort_keys=False, default_flow_style=False)
                parts.append(f"# workload: {name}\n# source: {manifest.location}\n{body}")
        return "---\n" + "---\n".join(parts) if parts else ""


@dataclass
class CheckResult:
    """The loaded repo and each environment's desired state, or every issue that stops them."""

    repo: LoadedRepo | None
    environments: dict[str, DesiredState]
    issues: list[Issue]

    @property
    def known(self) -> list[str]:
        return list(self.repo.environments) if self.repo else []


def check_checkout(
    root: Path,
    *,
    cache_dir: Path | None = None,
    revision: str = "",
    only: str | None = None,
) -> CheckResult:
    """Load, render and validate a checkout (one environment with `only`, else all of them)."""
    repo, issues = check_repo(root)
    if repo is None:
        return CheckResult(None, {}, issues)
    plaintext = unencrypted_by_rule(root)
    if plaintext:
        return CheckResult(repo, {}, plaintext)
    cache = RenderCache(cache_dir) if cache_dir is not None else None
    names = [name for name in repo.order() if only is None or name == only]
    rendered = _render_workloads(repo, names, revision, cache)
    states: dict[str, DesiredState] = {}
    problems: set[Issue] = set()
    for name in names:
        state, found = _environment_state(repo, name, rendered)
        states[name] = state
        problems.update(found)
    return CheckResult(repo, states if not problems else {}, sorted(problems))


def _render_workloads(
    repo: LoadedRepo, names: list[str], revision: str, cache: RenderCache | None
) -> dict[tuple[str, str], RenderedWorkload]:
    """Render every workload of the given environments on a small thread pool: most of a cold
    render is waiting for `kubectl kustomize` processes, which run in parallel."""
    jobs = [(name, workload.name, workload.path) for name in names
            for workload in repo.environments[name].spec.workloads]
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) * 2)) as pool:
        futures = {
            (name, workload): pool.submit(render_workload_cached, repo.root, path,
                                          repo.variables(name, workload), revision=revision, cache=cache)
            for name, workload, path in jobs
        }
        return {key: future.result() for key, future in futures.items()}


def _environment_state(
    repo: LoadedRepo, name: str, rendered: dict[tuple[str, str], RenderedWorkload]
) -> tuple[DesiredState, list[Issue]]:
    env = repo.environments[name]
    source = repo.sources[name]
    state = DesiredState(name)
    issues: list[Issue] = []
    for workload in env.spec.workloads:
        result = rendered[(name, workload.name)]
        state.workloads[workload.name] = result
        state.namespaces[workload.name] = workload.namespace
        issues.extend(result.issues)
    issues.extend(validate_manifests(schema_view(manifest) for manifest in state.manifests()))
    if env.spec.infrastructure is not None:
        state.infrastructure_path = env.spec.infrastructure.path
        try:
            state.tfvars = render_tfvars(env.spec.infrastructure.vars)
        except ValueError as error:
            issues.append(source.issue(("spec", "infrastructure", "vars"), str(error)))
    if env.spec.configuration is not None:
        state.playbook = env.spec.configuration.playbook
        try:
            state.extra_vars = render_extra_vars(env.spec.configuration.extra_vars)
        except ValueError as error:
            issues.append(source.issue(("spec", "configuration", "extraVars"), str(error)))
    return state, issues
