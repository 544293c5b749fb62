"""A real `tidegate worker` keeps a heartbeat for each process that runs tasks (its prefork pool
child as well as itself): the identity its Terraform state locks name, so a lock it leaves when it
is killed can be told from a live one (reconciler/heartbeats.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from reconciler import heartbeats
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.settings import Settings
from tidegate.wiring import open_store


def test_a_worker_and_its_pool_child_each_keep_a_heartbeat(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    data = tmp_path / "data"
    client = redis_client(redis_server.client_url)
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": redis_server.client_url,
           "TIDEGATE_LIVE_WATCHES": "false"}
    open_store(Settings(data_dir=data))
    worker = subprocess.Popen([sys.executable, "-m", "tidegate", "worker", "--concurrency", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    main = f"{socket.gethostname()}:{worker.pid}"
    try:
        deadline = time.monotonic() + 90
        beating: set[str] = set()
        while len(beating) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            beating = {key.decode().removeprefix(heartbeats.PREFIX)
                       for key in client.scan_iter(match=heartbeats.PREFIX + "*")}
            beating = {owner for owner in beating if owner == main or _child_of(owner, worker.pid)}
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)

    assert main in beating and len(beating) == 2, beating
    assert all(heartbeats.is_dead(client, owner) is False for owner in beating)  # until their TTL runs out


def _child_of(owner: str, parent: int) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rpartition(")")[2].split()[1]) == parent
