"""Fixtures shared by the CLI tests: a Redis server for the module; a store with one finished sync
whose three stages have logs (for `tidegate logs`), read in-process and over the real API; the fixed
history of the golden-output tests; the example's staging as `tidegate diff` plans it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.runtime import Services
from store import Stage, StageStatus, Sync, SyncLifecycle, SyncStageResult, SyncTrigger
from tests.support.cli_world import api_client, build_cli_world
from tests.support.diff_world import build_diff_world
from tests.support.drift_store import T0, build_drift_store
from tests.support.redis_server import start_redis
from tidegate.client import LocalClient
from tidegate.http_client import HttpClient
from tidegate.redis_server import EmbeddedRedis, redis_client

STAGE_LOGS = {
    Stage.INFRASTRUCTURE: "Initializing the backend...\naws_vpc.main: Creating...\n"
                          "aws_vpc.main: Creation complete after 2s [id=vpc-0a1b2c]\n"
                          "Apply complete! Resources: 1 added, 0 changed, 0 destroyed.\n",
    Stage.CONFIGURATION: "PLAY [nodes] *****\nTASK [Write the config] *****\nchanged: [node-1]\n",
    Stage.WORKLOADS: "apps/Deployment/web/web: configured",
}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def logged_sync(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[Services, int]]:
    """The drift store (tests.support.drift_store) plus sync #1 of infra/staging, succeeded, with a log
    per stage as the providers write them (the workloads one without a final newline)."""
    services = build_drift_store(tmp_path / "data", redis_client(redis_server.client_url))
    with services.database.session() as session:
        sync = Sync(environment_id=1, revision_id=2, trigger=SyncTrigger.POLL, status=SyncLifecycle.SUCCEEDED,
                    created_at=T0, started_at=T0, finished_at=T0 + timedelta(seconds=42))
        session.add(sync)
        session.flush()
        session.add_all([SyncStageResult(sync_id=sync.id, stage=stage, status=StageStatus.SUCCEEDED, log=text,
                                         started_at=T0, finished_at=T0 + timedelta(seconds=10))
                         for stage, text in STAGE_LOGS.items()])
        sync_id = sync.id
    yield services, sync_id
    services.database.dispose()


@pytest.fixture
def http_client(logged_sync: tuple[Services, int]) -> Iterator[HttpClient]:
    """The HTTP client as `ops` (an admin) against the real API over the same store."""
    yield from api_client(logged_sync[0], "ops")


@pytest.fixture
def local_client(logged_sync: tuple[Services, int]) -> LocalClient:
    return LocalClient(logged_sync[0], login="ops")


@pytest.fixture
def diff_staging(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[Services, str]]:
    """(services, head SHA): the example's staging as `tidegate diff` plans it (tests.support.diff_world)."""
    services, head = build_diff_world(tmp_path, redis_client(redis_server.client_url))
    yield services, head
    services.database.dispose()


@pytest.fixture
def cli_world(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Services]:
    """The golden tests' fixed history (tests.support.cli_world)."""
    services = build_cli_world(tmp_path / "data", redis_client(redis_server.client_url))
    yield services
    services.database.dispose()
