"""The words every layer shares (the vocabulary table in README.md), defined once at the bottom.

`Stage` names the three stages of an environment in pipeline order; `Health` is the health of an
object, a workload or an environment, in Argo CD's words (kstatus mapped as providers/kubernetes/health.py says). The
store persists these very types, the providers report them and the reconciler passes them on: no
layer has its own copy to convert through strings.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The three stages of an environment, in pipeline order."""

    INFRASTRUCTURE = "infrastructure"
    CONFIGURATION = "configuration"
    WORKLOADS = "workloads"


class Health(StrEnum):
    """Health of an object, a workload or an environment (kstatus mapped to Argo CD's words)."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"
    SUSPENDED = "Suspended"
    UNKNOWN = "Unknown"
