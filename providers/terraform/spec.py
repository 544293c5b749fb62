"""What the Terraform stage reads from a StageContext, as typed objects.

`StageContext.spec` is a `TerraformSpec` (`reconciler.contexts` resolves it once from the loaded
repo; the stage never reads the repo's spelling):

    path            the root module, relative to the rendered checkout (`workdir`)
    vars            the environment's Terraform variables
    tfvars          optional: the already rendered `tidegate.auto.tfvars.json` text (wins over vars)
    backend         optional: a `TerraformBackend` (where state lives and how it is locked)
    timeout         seconds per terraform command
    mirror_paths    provider mirror directories (the repo's `terraform.pluginMirror.paths`)
    offline         never fall back to the registry

`StageContext.settings` (connection settings injected by the composition root):

    terraform_plugin_dirs   mirror roots (':'-separated string or list), searched before the
                            standard places
    terraform_workspaces    directory holding one workspace per environment
                            (default: `<artifacts>/workspaces`)
    terraform_binary        default `terraform`
    aws_provider            attributes for the AWS provider, e.g. `{"endpoints": {...},
                            "skip_credentials_validation": true}` (sandbox mode); written as an
                            override file in the workspace
    backend_config          extra `-backend-config` values, over the repo's (sandbox endpoints)
    lock_timeout            seconds; overrides the backend's `lockTimeout`
    lock_probe              seconds one terraform command waits for a held lock before the run
                            judges the holder again (default 10): a dead worker's lock is broken
                            within a probe of its heartbeat going, not after the whole timeout

`StageContext.credentials` become environment variables of every terraform call
(e.g. AWS_ACCESS_KEY_ID); their values are masked in every log line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TerraformBackend:
    """Where state lives: S3 (locked by a DynamoDB table or S3 lock files) or a local file."""

    type: Literal["s3", "local"] = "s3"
    bucket: str | None = None
    key: str | None = None
    region: str | None = None
    dynamodb_table: str | None = None
    use_lockfile: bool = False
    encrypt: bool = True
    lock_timeout: float = 300.0
    """Seconds to wait for the state lock."""


@dataclass(frozen=True)
class TerraformSpec:
    """The infrastructure stage's typed input."""

    path: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    tfvars: str | None = None
    backend: TerraformBackend | None = None
    timeout: float = 1800.0
    mirror_paths: Sequence[str] = ()
    offline: bool = True
