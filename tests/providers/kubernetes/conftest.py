"""Manifests for schema tests, read with the located YAML reader as rendering does."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence

import pytest

from providers.kubernetes.inventory import from_json as inventory_from_json
from providers.kubernetes.schema import PlainManifest
from providers.kubernetes.stage import WorkloadsInputs
from reconciler.contexts import workload_settings
from repo_schema.documents import read_documents
from repo_schema.models import WorkloadSpec

Load = Callable[..., list[PlainManifest]]


@pytest.fixture
def load() -> Load:
    """YAML text → one `PlainManifest` per document, each keeping its document for line mapping."""

    def load(text: str, file: str = "apps/web/manifests.yaml") -> list[PlainManifest]:
        documents, issues = read_documents(textwrap.dedent(text), file)
        assert issues == []
        return [PlainManifest(document.data, document.start, document) for document in documents]

    return load


# --- The Kubernetes stage against the API emulator over real HTTPS --------------------------------

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from providers.kubernetes.client import KubeClient, RetryPolicy  # noqa: E402
from sandbox.kube import KubeSandbox  # noqa: E402


@pytest.fixture
def kube() -> Iterator[KubeSandbox]:
    """A fresh emulator per test, simulated controllers on with a small delay; CRDs Established after 0.3 s."""
    with KubeSandbox(bookmark_interval=0.2, controller_delay=0.02, crd_delay=0.3) as sandbox:
        yield sandbox


@pytest.fixture
def kubeconfig(kube: KubeSandbox, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def client(kubeconfig: Path) -> Iterator[KubeClient]:
    """A client whose retries do not sleep for real (backoff is recorded instead)."""
    sleeps: list[float] = []
    retry = RetryPolicy(sleep=sleeps.append)
    connected = KubeClient.connect(path=kubeconfig, retry=retry)
    connected.sleeps = sleeps  # type: ignore[attr-defined]
    yield connected
    connected.close()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "infra-repo"


@pytest.fixture(scope="session")
def example_states() -> dict[str, Any]:
    """Both example environments rendered once (tests only: providers never import reconciler)."""
    from reconciler.desired import check_checkout

    result = check_checkout(EXAMPLE)
    assert result.issues == []
    return dict(result.environments)


@pytest.fixture(scope="session")
def example_specs() -> dict[str, dict[str, Any]]:
    """Each example environment's spec as written (camelCase), as the stage receives it."""
    from reconciler.desired import check_checkout

    result = check_checkout(EXAMPLE)
    assert result.repo is not None
    return {name: env.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
            for name, env in result.repo.environments.items()}


def workloads_inputs(spec: Mapping[str, Any], manifests: Mapping[str, Sequence[Any]],
                     inventory: Mapping[str, Any] | None = None) -> WorkloadsInputs:
    """The stage's typed input from an environment spec in the config repo's spelling (`workloads`,
    `sync.prune`), read by the repo's own models and converted as the reconciler converts them. A
    workload written here without a `path` gets one: the stage never reads it."""
    workloads = [WorkloadSpec.model_validate({"path": f"apps/{item['name']}", **item})
                 for item in spec.get("workloads") or []]
    return WorkloadsInputs(manifests=manifests, workloads=workload_settings(workloads),
                           prune=bool((spec.get("sync") or {}).get("prune", True)),
                           inventory=inventory_from_json(inventory) if inventory is not None else None)
