"""Terraform stage: offline runner, workspaces, saved plans, apply of exactly those, drift."""

from providers.terraform.mirror import ProviderNotFound
from providers.terraform.plans import StateVersion
from providers.terraform.runner import Diagnostic, TerraformError, TerraformTimeout
from providers.terraform.spec import TerraformBackend, TerraformSpec
from providers.terraform.stage import (
    BackendUnreachable,
    DriftCheck,
    Outputs,
    StalePlan,
    StateLocked,
    TerraformStage,
)

__all__ = [
    "BackendUnreachable",
    "Diagnostic",
    "DriftCheck",
    "Outputs",
    "ProviderNotFound",
    "StalePlan",
    "StateLocked",
    "StateVersion",
    "TerraformBackend",
    "TerraformError",
    "TerraformSpec",
    "TerraformStage",
    "TerraformTimeout",
]
