"""Caps on what one workload may make a worker do; exceeding one is an issue, never a crash."""

from __future__ import annotations

from dataclasses import dataclass

from repo_schema.documents import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class RenderLimits:
    """Per-workload caps. `file` applies to every YAML file read and every template's output."""

    file: Limits = DEFAULT_LIMITS
    max_depth: int = 100
    max_manifests: int = 5000
    max_files: int = 10_000
    max_output_bytes: int = 64 * 1024 * 1024
    kustomize_timeout: float = 60.0
    template_loop_budget: int = 100_000  # total range() iterations per workload
    template_max_sequence: int = 1_000_000  # items of a string or list built with `*`
    template_seconds: float = 10.0  # per template, inside the sealed child


DEFAULT_RENDER_LIMITS = RenderLimits()
