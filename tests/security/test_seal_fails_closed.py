"""A worker that cannot seal repository code refuses it, and says so where people look.

Fail closed: without the runner user (or bubblewrap, or the right to switch user) no Terraform,
Ansible, kustomize or template runs at all — a stage fails with the reason — and the worker's log,
`tidegate status` and `/healthz` all say why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from providers import sealed
from providers.terraform.runner import Runner, clean_environment
from reconciler import sealing
from reconciler.rendering.kustomize import run_kustomize
from reconciler.rendering.limits import DEFAULT_RENDER_LIMITS
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.serve import create_app
from tidegate.settings import Settings
from tidegate.wiring import open_store

MISSING_USER = "tidegate-no-such-runner"


@pytest.fixture
def unsealable() -> Iterator[sealed.Seal]:
    previous = sealed.current()
    seal = sealed.Seal(user=MISSING_USER)
    sealed.configure(seal)
    try:
        yield seal
    finally:
        sealed.configure(previous)


def test_without_its_runner_user_a_worker_refuses_terraform_and_kustomize_with_the_reason(
        tmp_path: Path, unsealable: sealed.Seal) -> None:
    assert not unsealable.status().sealed
    assert f"the runner user {MISSING_USER!r} does not exist" in unsealable.status().reason

    with pytest.raises(sealed.SealUnavailable, match="repository code is REFUSED"):
        Runner(tmp_path, clean_environment()).run(["version"])
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kustomization.yaml").write_text("resources: []\n")
    output, issues = run_kustomize(tmp_path, "app", "app/kustomization.yaml", DEFAULT_RENDER_LIMITS)
    assert output is None and "does not exist" in issues[0].message


def test_a_worker_that_cannot_seal_says_why_in_its_log_status_and_healthz(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    data = tmp_path / "data"
    client = redis_client(redis_server.client_url)
    client.flushall()
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": redis_server.client_url,
           "TIDEGATE_RUNNER_USER": MISSING_USER, "TIDEGATE_LIVE_WATCHES": "false"}
    open_store(Settings(data_dir=data))
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen([sys.executable, "-m", "tidegate", "worker", "--concurrency", "1"], env=env,
                                  stdout=handle, stderr=handle, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not sealing.reports(client) and time.monotonic() < deadline:
            time.sleep(0.2)
        status = subprocess.run([sys.executable, "-m", "tidegate", "status"], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        settings = Settings(data_dir=data, redis_url=redis_server.client_url)
        with TestClient(create_app(settings)) as http:
            health = http.get("/healthz").json()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)

    reason = f"the runner user {MISSING_USER!r} does not exist"
    assert reason in log.read_text() and "repository code is REFUSED" in log.read_text()
    assert "refuses repository code" in status.stdout and reason in status.stdout, status.stdout + status.stderr
    assert health["sealed"] is False and reason in health["workers"][0]["reason"]
    assert sealing.reports(client) == [], "the report is withdrawn when the worker stops"
