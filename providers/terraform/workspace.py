"""One environment's Terraform working directory, owned by Tidegate (never the repo checkout).

Layout under `<workspaces>/<environment>/`:

    module/                      copy of the rendered root module, plus what Tidegate adds:
      tidegate.auto.tfvars.json    the environment's variables
      tidegate_backend_override.tf the backend type (values come from backend.tfbackend)
      tidegate_provider_override.tf  sandbox endpoints for the AWS provider, when given
      .terraform/, .terraform.lock.hcl  kept between runs (the init cache)
    backend.tfbackend            `-backend-config` values (no credentials: those go in the env)
    terraformrc                  the CLI config: filesystem mirrors only (offline)
    init.json                    what the cached init was made from
    state/terraform.tfstate      state, for a `local` backend

Saved plan files are not kept here but in the run's artifacts directory (StageContext.artifacts).

`init` runs again only when the inputs that shape it change: provider and module requirements,
the lock file, the backend configuration or the CLI config.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.stage import StageFailed, digest
from providers.terraform.runner import Runner
from repo_schema.paths import links_leaving

TFVARS_FILE = "tidegate.auto.tfvars.json"
BACKEND_OVERRIDE = "tidegate_backend_override.tf"
PROVIDER_OVERRIDE = "tidegate_provider_override.tf"
PROVIDER_FILE = "tidegate_provider.tf"
LOCK_FILE = ".terraform.lock.hcl"
_KEEP = {".terraform", LOCK_FILE}
_REQUIREMENT = re.compile(r'^\s*(source|version|required_version)\s*=.*$', re.MULTILINE)
_PROVIDER_BLOCK = r'^\s*provider\s+"{name}"\s*\{{'


class ModuleLinkError(StageFailed):
    """The module holds a symlink out of itself: copying it would carry in what the link points at."""


def hcl_value(value: Any) -> str:
    """A JSON value is a valid HCL expression (objects may use `:`), which is all we need."""
    return json.dumps(value, sort_keys=True)


class Workspace:
    """The working directory of one environment's stack."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.module = root / "module"
        self.backend_file = root / "backend.tfbackend"
        self.cli_config = root / "terraformrc"
        self.init_record = root / "init.json"
        self.shipped_lock = ""

    def sync_module(self, source: Path) -> None:
        """Make `module/` an exact copy of `source`, keeping the init cache (.terraform, lock file)
        unless the source ships its own lock file."""
        if not source.is_dir():
            raise FileNotFoundError(f"Terraform module directory {source} does not exist")
        leaving = links_leaving(source)
        if leaving:
            raise ModuleLinkError(f"the Terraform module has symlinks that leave it (or dangle): {', '.join(leaving)}; "
                                  "module copies never follow a link out of the module")
        shipped = source / LOCK_FILE
        self.shipped_lock = shipped.read_text() if shipped.is_file() else ""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # variables and backend settings live here
        self.module.mkdir(parents=True, exist_ok=True)
        for entry in self.module.iterdir():
            if entry.name in _KEEP:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in source.iterdir():
            if entry.name == ".terraform":
                continue
            target = self.module / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, symlinks=False)
            else:
                shutil.copy2(entry, target)

    def write_inputs(
        self,
        *,
        tfvars: str,
        backend_type: str | None,
        backend_values: Mapping[str, Any],
        cli_config: str,
        aws_provider: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the variables, backend, CLI config and (sandbox) provider override files."""
        (self.module / TFVARS_FILE).write_text(tfvars)
        if backend_type:
            (self.module / BACKEND_OVERRIDE).write_text(
                f'terraform {{\n  backend "{backend_type}" {{}}\n}}\n')
        lines = [f"{key} = {hcl_value(value)}" for key, value in sorted(backend_values.items())]
        self.backend_file.write_text("\n".join(lines) + ("\n" if lines else ""))
        self.cli_config.write_text(cli_config)
        if aws_provider:
            self._write_provider("aws", aws_provider)

    def _write_provider(self, name: str, attributes: Mapping[str, Any]) -> None:
        body = []
        for key, value in sorted(attributes.items()):
            if isinstance(value, Mapping):  # a nested block, e.g. endpoints { s3 = "..." }
                inner = [f"    {k} = {hcl_value(v)}" for k, v in sorted(value.items())]
                body += [f"  {key} {{", *inner, "  }"]
            else:
                body.append(f"  {key} = {hcl_value(value)}")
        text = f'provider "{name}" {{\n' + "\n".join(body) + "\n}\n"
        declared = any(re.search(_PROVIDER_BLOCK.format(name=name), path.read_text(errors="replace"), re.MULTILINE)
                       for path in self.module.glob("*.tf") if not path.name.startswith("tidegate_"))
        (self.module / (PROVIDER_OVERRIDE if declared else PROVIDER_FILE)).write_text(text)

    def init_key(self) -> str:
        """What init depends on: requirements, shipped lock file, backend and CLI config."""
        requirements = []
        for path in sorted(self.module.glob("*.tf")):
            text = path.read_text(errors="replace")
            requirements += [f"{path.name}:{m.group(0).strip()}" for m in _REQUIREMENT.finditer(text)]
        backend_override = self.module / BACKEND_OVERRIDE
        return digest({
            "requirements": sorted(requirements),
            "backend": self.backend_file.read_text() if self.backend_file.exists() else "",
            "backend_type": backend_override.read_text() if backend_override.exists() else "",
            "cli_config": self.cli_config.read_text() if self.cli_config.exists() else "",
            "lock": self.shipped_lock,
        })

    def _recorded_key(self) -> str | None:
        try:
            data = json.loads(self.init_record.read_text())
        except (OSError, ValueError):
            return None
        return data.get("key") if isinstance(data, dict) else None

    def needs_init(self) -> bool:
        return not (self.module / ".terraform").is_dir() or self._recorded_key() != self.init_key()

    def init(self, runner: Runner, *, force: bool = False) -> bool:
        """Run `terraform init` unless the cached one still fits; True when it ran."""
        if not force and not self.needs_init():
            return False
        key = self.init_key()
        if not self.shipped_lock:  # our own lock file from an earlier init: let versions resolve again
            (self.module / LOCK_FILE).unlink(missing_ok=True)
        self.init_record.unlink(missing_ok=True)
        runner.run(["init", "-json", "-input=false", "-reconfigure", "-no-color",
                    f"-backend-config={self.backend_file}"])
        self.init_record.write_text(json.dumps({"key": key}, indent=2) + "\n")
        return True
