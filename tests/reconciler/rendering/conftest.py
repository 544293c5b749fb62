"""Fixture config repos built file by file in tmp_path, with a hostile outside world next to them."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.rendering import RenderedWorkload, RenderLimits, render_workload
from reconciler.rendering.age import generate_identity
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS
from reconciler.rendering.sops import SopsFormat, decrypt, find_sops

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: nginx:1.27
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
    - port: 80
      targetPort: http
"""


@dataclass
class Repo:
    """A checkout under construction, and an `outside` directory it must never reach."""

    root: Path
    outside: Path

    @staticmethod
    def deployment(name: str = "web", replicas: object = 2) -> str:
        return DEPLOYMENT.format(name=name, replicas=replicas)

    @staticmethod
    def service(name: str = "web") -> str:
        return SERVICE.format(name=name)

    def write(self, path: str, text: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return target

    def link(self, path: str, target: Path | str) -> None:
        link = self.root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)

    def render(
        self, path: str, variables: Mapping[str, Any] | None = None,
        limits: RenderLimits = DEFAULT_RENDER_LIMITS,
    ) -> RenderedWorkload:
        return render_workload(self.root, path, variables or {}, limits=limits)

    def issues(self, path: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> list[str]:
        """The printed issues of a render, as users see them."""
        return [str(issue) for issue in self.render(path, variables, **kwargs).issues]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "checkout"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\nstringData: {password: hunter2}\n"
    )
    (outside / "kustomization.yaml").write_text("resources: [secret.yaml]\n")
    return Repo(root, outside)


@dataclass(frozen=True)
class Keys:
    identity: str
    recipient: str


@dataclass(frozen=True)
class SopsRepo:
    """A config repo whose `.sops.yaml` encrypts for `keys`; `encrypt` writes a file and runs sops on it."""

    repo: Repo
    keys: Keys

    @property
    def root(self) -> Path:
        return self.repo.root

    def encrypt(self, path: str, text: str) -> Path:
        target = self.repo.write(path, text)
        done = subprocess.run([str(find_sops()), "--encrypt", "--in-place", path], cwd=self.root,
                              env={"HOME": "/nonexistent", "LC_ALL": "C"}, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return target

    def decrypt(self, path: str, fmt: SopsFormat, identity: str | None = None, **kwargs: Any) -> str:
        return decrypt(self.root / path, fmt, identity=identity or self.keys.identity, where=path, **kwargs)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(*generate_identity())


@pytest.fixture
def sops_repo(repo: Repo, keys: Keys) -> SopsRepo:
    """Kubernetes Secrets encrypt only `data`/`stringData` (the rest stays readable and MAC-covered);
    tfvars and dotenv files encrypt every value."""
    repo.write(".sops.yaml", f"""\
        creation_rules:
          - path_regex: \\.ya?ml$
            encrypted_regex: ^(data|stringData)$
            age: {keys.recipient}
          - path_regex: \\.(json|env)$
            age: {keys.recipient}
        """)
    return SopsRepo(repo, keys)
