"""Rendering: a workload path of a checkout → ordered Kubernetes manifests with source locations;
environment variables → Terraform tfvars and Ansible extra vars. Reads only inside the checkout.

Public API (what the CLI and the pipeline call):

* `render_workload(checkout, path, variables, *, limits=…) -> RenderedWorkload`
* `render_workload_cached(checkout, path, variables, *, revision, cache, limits=…) -> RenderedWorkload`
* `RenderCache(directory)` with `get(key)` / `put(key, workload, revision=…)`, and `cache_key(…)`
* `render_tfvars(variables) -> str`, `render_extra_vars(variables) -> str`
* `Manifest`, `ObjectIdentity`, `RenderedWorkload`, `RenderLimits`
"""

from reconciler.rendering.cache import RenderCache, cache_key, render_workload_cached
from reconciler.rendering.inputs import TFVARS_FILE, render_extra_vars, render_tfvars
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS, RenderLimits
from reconciler.rendering.manifest import Manifest, ObjectIdentity, digest_manifests
from reconciler.rendering.workload import RenderedWorkload, render_workload

__all__ = [
    "DEFAULT_RENDER_LIMITS",
    "TFVARS_FILE",
    "Manifest",
    "ObjectIdentity",
    "RenderCache",
    "RenderLimits",
    "RenderedWorkload",
    "cache_key",
    "digest_manifests",
    "render_extra_vars",
    "render_tfvars",
    "render_workload",
    "render_workload_cached",
]
