"""The two `reconciler.targets.Targets` the composition root can inject: real and sandbox.

Real targets take AWS settings from the operator's environment (a fixed list, never the whole
environment), the SSH key from the variable the repo's `privateKeyRef.env` names, and the
kubeconfig from the Terraform output the environment names. Sandbox targets read the endpoint map
`tidegate up` publishes (moto, one API emulator per environment's cluster, SSH nodes or a local
connection) and log every substitution they make.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from providers.ansible.stage import EXTRA_VAR_CREDENTIAL
from reconciler.secrets import StoredSecrets
from reconciler.targets import Connection, TargetsError
from repo_schema.models import ConfigurationSpec, SecretRef
from sandbox.aws import AwsEndpoints
from tidegate.extras import require_sandbox
from tidegate.settings import Settings
from tidegate.wiring import terraform_plugin_dirs

log = logging.getLogger("tidegate.targets")

AWS_PASSTHROUGH = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def _terraform_settings(settings: Settings, repository: str) -> dict[str, Any]:
    return {"terraform_plugin_dirs": terraform_plugin_dirs(settings),
            "terraform_workspaces": str(settings.data_dir / "runs" / repository / "workspaces")}


def stored_secret(secrets: StoredSecrets | None, repository: str, environment: str, name: str, where: str) -> str:
    """A stored secret's value for a reference at `where`, or a TargetsError that says how to set it."""
    value = secrets.resolve(repository, environment, name) if secrets is not None else None
    if value is None:
        raise TargetsError(f"{environment}: {where} names the stored secret {name!r}, which {repository}/"
                           f"{environment} cannot see; set it with: tidegate secret set {name} --repo {repository} "
                           f"--env {environment} --from-file FILE")
    return value


class RealTargets:
    """Stages run against what the repo and the operator's environment name."""

    def __init__(self, settings: Settings, secrets: StoredSecrets | None = None) -> None:
        self.settings = settings
        self.secrets = secrets

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        return stored_secret(self.secrets, repository, environment, name, where)

    def infrastructure(self, repository: str, environment: str) -> Connection:
        credentials = {name: os.environ[name] for name in AWS_PASSTHROUGH if name in os.environ}
        return Connection(_terraform_settings(self.settings, repository), credentials)

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        connection = spec.connection
        key = self._reference(repository, environment, "connection.privateKeyRef",
                              connection.private_key_ref if connection is not None else None)
        known_hosts = self._reference(repository, environment, "connection.knownHostsRef",
                                      connection.known_hosts_ref if connection is not None else None)
        become = self._reference(repository, environment, "connection.becomePasswordRef",
                                 connection.become_password_ref if connection is not None else None)
        credentials = {} if key is None else {"ssh_private_key": key}
        if become is not None:
            credentials[f"{EXTRA_VAR_CREDENTIAL}ansible_become_password"] = become
        return Connection({} if known_hosts is None else {"known_hosts": known_hosts}, credentials)

    def _reference(self, repository: str, environment: str, where: str, ref: SecretRef | None) -> str | None:
        """The value a `{secret: NAME}` or `{env: VARIABLE}` reference names (None without one)."""
        if ref is None:
            return None
        if ref.secret:
            return self.secret(repository, environment, ref.secret, f"{where}.secret")
        value = os.environ.get(ref.env or "")
        if not value:
            raise TargetsError(f"{environment}: {where}.env names {ref.env}, which is not set")
        return value

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        if kubeconfig is None:
            raise TargetsError(f"{environment}: no kubeconfig (the Terraform output the cluster names is unknown)")
        return Connection({}, {"kubeconfig": kubeconfig})

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        """Only the read-only credentials `spec.preview.<stage>` names, from the worker's environment."""
        where = f"{environment}: spec.preview.{stage}"
        if stage == "infrastructure":
            names = dict(refs.get("env") or {})
            missing = sorted(variable for variable in names.values() if not os.environ.get(variable))
            if missing:
                raise TargetsError(f"{where}.env names {', '.join(missing)}, not set in the worker's environment")
            return Connection(connection.settings, {name: os.environ[variable] for name, variable in names.items()})
        key = "privateKeyRef" if stage == "configuration" else "kubeconfigRef"
        ref = refs.get(key) or {}
        if ref.get("secret"):
            value = self.secret(repository, environment, str(ref["secret"]), f"spec.preview.{stage}.{key}.secret")
        else:
            value = _env_reference(f"{where}.{key}", ref)
        return Connection(connection.settings, {"ssh_private_key" if stage == "configuration" else "kubeconfig": value})


class SandboxTargets:
    """Stages run against the sandbox whose endpoint map `tidegate up` wrote to `path`."""

    def __init__(self, settings: Settings, path: Path, secrets: StoredSecrets | None = None) -> None:
        require_sandbox("a worker in sandbox mode (TIDEGATE_SANDBOX_MAP)")
        self.settings = settings
        self.path = path
        self.map: dict[str, Any] = json.loads(path.read_text())
        self.secrets = secrets

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        """Stored secrets resolve as against real targets: the sandbox replaces endpoints, not values."""
        return stored_secret(self.secrets, repository, environment, name, where)

    def infrastructure(self, repository: str, environment: str) -> Connection:
        aws = AwsEndpoints(**self.map["aws"])
        log.info("sandbox: %s/%s infrastructure: AWS endpoints, S3 backend and DynamoDB lock -> %s (fake keys)",
                 repository, environment, aws.url)
        return Connection({**_terraform_settings(self.settings, repository), **aws.stage_settings()},
                          aws.stage_credentials())

    def configuration(self, repository: str, environment: str, nodes: Sequence[Mapping[str, Any]],
                      spec: ConfigurationSpec) -> Connection:
        pool = (self.map.get("nodes") or {}).get(environment)
        if pool is None:
            raise TargetsError(f"sandbox: no nodes for environment {environment!r}")
        if len(nodes) > len(pool["hosts"]):
            raise TargetsError(f"sandbox: {environment} reports {len(nodes)} nodes but the sandbox made "
                               f"{len(pool['hosts'])}; start `tidegate up` with more nodes")
        host_vars: dict[str, dict[str, Any]] = {}
        if pool["type"] == "local":
            for node, host in zip(nodes, pool["hosts"], strict=False):
                Path(host["node_prefix"]).mkdir(parents=True, exist_ok=True)
                # The Ansible stage gives local hosts this process's Python itself (providers/ansible/runner.py).
                host_vars[str(node["name"])] = {"node_prefix": host["node_prefix"]}
                log.info("sandbox: %s node %s -> local connection, files under %s", environment, node["name"],
                         host["node_prefix"])
            # The nodes' directories are in the data dir, which sealed runs do not see: expose them.
            writable = [str(host["node_prefix"]) for host in pool["hosts"][:len(nodes)]]
            return Connection({"connection": {"type": "local"}, "host_vars": host_vars, "writable_paths": writable},
                              {})
        overrides: dict[str, dict[str, Any]] = {}
        for node, host in zip(nodes, pool["hosts"], strict=False):
            name = str(node["name"])
            overrides[name] = {"address": host["address"], "port": host["port"], "user": host["user"]}
            host_vars[name] = {"node_prefix": host["node_prefix"], "ansible_python_interpreter": "/usr/bin/python3"}
            log.info("sandbox: %s node %s (%s) -> ssh://%s@%s:%s", environment, name, node.get("address"),
                     host["user"], host["address"], host["port"])
        settings = {"connection": {"type": "ssh", "user": pool["hosts"][0]["user"], "port": 22,
                                   "hostOverrides": overrides},
                    "host_vars": host_vars, "known_hosts": Path(pool["known_hosts"]).read_text()}
        log.info("sandbox: %s SSH key from %s replaces connection.privateKeyRef", environment, pool["private_key"])
        return Connection(settings, {"ssh_private_key": Path(pool["private_key"]).read_text()})

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        cluster = (self.map.get("clusters") or {}).get(environment)
        if cluster is None:
            raise TargetsError(f"sandbox: no API emulator for environment {environment!r}")
        if kubeconfig is not None:
            original = _server_of(kubeconfig)
            log.info("sandbox: %s kubeconfig output: server %s, CA and token -> the API emulator at %s",
                     environment, original, cluster["server"])
        from sandbox.kube.runner import kubeconfig as emulator_kubeconfig  # the [sandbox] extra: not on serve's path

        config = emulator_kubeconfig(cluster["server"], cluster["token"], cluster["ca_pem"].encode())
        return Connection({}, {"kubeconfig": yaml.safe_dump(config)})

    def preview(self, repository: str, environment: str, stage: str, connection: Connection,
                refs: Mapping[str, Any]) -> Connection:
        log.info("sandbox: %s %s preview: the sandbox's own credentials stand in for spec.preview.%s",
                 environment, stage, stage)
        return connection


def _env_reference(where: str, ref: Mapping[str, Any]) -> str:
    value = os.environ.get(str(ref.get("env") or ""))
    if not value:
        raise TargetsError(f"{where}.env names {ref.get('env')}, which is not set in the worker's environment")
    return value


def _server_of(kubeconfig: str) -> str:
    try:
        data = yaml.safe_load(kubeconfig)
        return str(data["clusters"][0]["cluster"]["server"])
    except Exception:
        return "(unreadable)"
