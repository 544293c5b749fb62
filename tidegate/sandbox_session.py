"""The sandbox session behind `tidegate up`: local stand-ins for everything the example reaches.

One moto server (AWS APIs, the S3 state bucket and the DynamoDB lock table), one Kubernetes API
emulator per environment with workloads (its server, CA and token replace those of the cluster's
kubeconfig output: moto's EKS kubeconfig points nowhere), and SSH nodes for the nodes Terraform
reports (network namespaces running sshd when this machine allows it, else a local connection
with a private directory per node). The session publishes one explicit endpoint map (a 0600 JSON
file) that workers read through `tidegate.targets.SandboxTargets`.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from repo_schema.loader import LoadedRepo
from sandbox.aws import DEFAULT_BUCKET, DEFAULT_LOCK_TABLE, DEFAULT_REGION, AwsSandbox
from sandbox.kube.runner import KubeSandbox
from sandbox.nodes import SshNodes, SshNodesUnavailable

log = logging.getLogger("tidegate.sandbox")


def nodes_wanted(repo: LoadedRepo, environment: str, default: int = 2) -> int:
    """How many nodes an environment's Terraform will report (its `node_count` variable, if it has one)."""
    infra = repo.environments[environment].spec.infrastructure
    count = infra.vars.get("node_count") if infra is not None else None
    return count if isinstance(count, int) and 0 < count <= 8 else default


class SandboxSession:
    """Starts the stand-ins for one config repo and writes the endpoint map to `path`."""

    def __init__(self, repo: LoadedRepo, directory: Path, *, ssh: bool = True) -> None:
        self.repo = repo
        self.directory = directory
        self.want_ssh = ssh
        self.path = directory / "endpoints.json"
        self.map: dict[str, Any] = {}
        self.kube: dict[str, KubeSandbox] = {}
        self.nodes: SshNodes | None = None
        self._stack = ExitStack()

    def start(self) -> SandboxSession:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.map = {"aws": self._aws(), "clusters": self._clusters(), "nodes": self._nodes()}
        except BaseException:
            self._stack.close()
            raise
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.map, handle, indent=2)
        return self

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> SandboxSession:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _aws(self) -> dict[str, Any]:
        backends = [self.repo.backend(name) for name in self.repo.order()]
        backend = next((b for b in backends if b is not None), None)
        aws = self._stack.enter_context(AwsSandbox(
            bucket=(backend.bucket if backend else None) or DEFAULT_BUCKET,
            lock_table=(backend.dynamodb_table if backend else None) or DEFAULT_LOCK_TABLE,
            region=(backend.region if backend else None) or DEFAULT_REGION))
        log.info("sandbox: AWS (moto) at %s, bucket %s, lock table %s", aws.url, aws.bucket, aws.lock_table)
        return {"url": aws.url, "region": aws.region, "access_key": aws.access_key, "secret_key": aws.secret_key,
                "bucket": aws.bucket, "lock_table": aws.lock_table}

    def _clusters(self) -> dict[str, Any]:
        clusters: dict[str, Any] = {}
        for name in self.repo.order():
            if not self.repo.environments[name].spec.workloads:
                continue
            kube = self._stack.enter_context(KubeSandbox())
            self.kube[name] = kube
            ca = kube.certs.ca_pem.decode() if kube.certs is not None else ""
            clusters[name] = {"server": kube.url, "token": kube.token, "ca_pem": ca}
            log.info("sandbox: %s cluster -> Kubernetes API emulator at %s", name, kube.url)
        return clusters

    def _nodes(self) -> dict[str, Any]:
        wanted = {name: nodes_wanted(self.repo, name) for name in self.repo.order()
                  if self.repo.environments[name].spec.configuration is not None}
        total = sum(wanted.values())
        if total == 0:
            return {}
        if self.want_ssh:
            try:
                self.nodes = self._stack.enter_context(SshNodes(total))
            except SshNodesUnavailable as error:
                log.warning("sandbox: SSH nodes unavailable (%s); using a local connection per node", error)
        pools: dict[str, Any] = {}
        offset = 0
        for name, count in wanted.items():
            if self.nodes is not None:
                hosts = [{"address": n.address, "port": n.port, "user": n.user, "node_prefix": n.node_prefix}
                         for n in self.nodes.nodes[offset:offset + count]]
                pools[name] = {"type": "ssh", "hosts": hosts, "private_key": str(self.nodes.private_key),
                               "known_hosts": str(self.nodes.known_hosts)}
            else:
                hosts = [{"node_prefix": str(self.directory / "nodes" / name / f"node-{i}")} for i in range(count)]
                pools[name] = {"type": "local", "hosts": hosts}
            offset += count
        return pools
