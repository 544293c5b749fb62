"""What the Terraform stage reads from a StageContext, as one typed object.

`StageContext.spec` (plain values, as the reconciler passes them; `reconciler.contexts` builds it
from a loaded repo):

    path            the root module, relative to the rendered checkout (`workdir`)
    vars            the environment's Terraform variables
    tfvars          optional: the already rendered `tidegate.auto.tfvars.json` text (wins over vars)
    backend         optional: repo_schema Backend fields (type, bucket, key, region, dynamodb_table,
                    use_lockfile, encrypt, lock_timeout in seconds)
    timeout         seconds per terraform command
    plugin_mirror   {paths: [...], offline: bool}

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

`StageContext.credentials` become environment variables of every terraform call
(e.g. AWS_ACCESS_KEY_ID); their values are masked in every log line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.stage import StageContext


@dataclass(frozen=True)
class TerraformSpec:
    path: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    tfvars: str | None = None
    backend: Mapping[str, Any] | None = None
    timeout: float = 1800.0
    mirror_paths: Sequence[str] = ()
    offline: bool = True

    @classmethod
    def from_context(cls, context: StageContext) -> TerraformSpec:
        spec = context.spec
        if "path" not in spec:
            raise ValueError("the infrastructure stage needs spec.path (the Terraform root module)")
        mirror = spec.get("plugin_mirror") or {}
        return cls(
            path=str(spec["path"]),
            vars=dict(spec.get("vars") or {}),
            tfvars=spec.get("tfvars"),
            backend=spec.get("backend"),
            timeout=float(spec.get("timeout") or 1800.0),
            mirror_paths=tuple(str(p) for p in mirror.get("paths") or ()),
            offline=bool(mirror.get("offline", True)),
        )
