"""Property tests: whatever a workload directory holds, render + validate answer with located issues."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.kubernetes.schema import validate_manifests
from reconciler.rendering import render_workload

SEED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80, targetPort: http}]
"""

FRAGMENTS = st.sampled_from(
    [":", "- ", "{", "}", "[", "]", "&a ", "*a ", "<<: ", "? ", "|", "'", '"', "\t", "\n", "  ", "on", "~",
     "1e9", ".nan", "---\n", "kind: ", "apiVersion: ", "metadata:", "name: ", "replicaz: 3", "1: x", "{{ x }}",
     "{% if %}", "!!binary ", "\x00", "null", "[]", "{}"]
)


def render_and_validate(text: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "apps" / "web").mkdir(parents=True)
        (root / "apps" / "web" / name).write_text(text, errors="surrogateescape")
        workload = render_workload(root, "apps/web", {"x": 1})
        issues = [*workload.issues, *validate_manifests(workload.manifests)]
    for issue in issues:
        assert issue.location.file.startswith("apps/web"), issue
        assert issue.location.line >= 1 and issue.location.column >= 1, issue
        assert issue.message and issue.field, issue


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["all.yaml", "all.yaml.j2"]))
def test_mutated_manifests_render_and_validate_without_raising(
    mutate_yaml: Callable[..., str], data: st.DataObject, name: str
) -> None:
    render_and_validate(mutate_yaml(SEED, data, FRAGMENTS), name)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_random_text_renders_and_validates_without_raising(text: str) -> None:
    render_and_validate(text, "random.yaml")
