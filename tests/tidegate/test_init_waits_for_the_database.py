"""`tidegate init --wait`: a Tidegate started beside its PostgreSQL (a Docker stack starts every
service at once) waits for the database instead of exiting and being restarted."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.store.conftest import PostgresServer, postgres_server
from tests.support.git_server import free_port

__all__ = ["postgres_server"]
pytestmark = pytest.mark.postgres


@contextlib.contextmanager
def forwarding(port: int, target: int) -> Iterator[None]:
    """Listen on `port` and pipe every connection to `target` (the database "comes up")."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _init(url: str, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")},
           "TIDEGATE_DATABASE_URL": url, "TIDEGATE_DATA_DIR": str(data_dir),
           "TIDEGATE_SECRET_KEY": Fernet.generate_key().decode()}
    return subprocess.Popen([sys.executable, "-m", "tidegate", "init", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_init_waits_for_a_database_that_comes_up_later_and_migrates_it(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    postgres_server.create_database("init_waits")
    port = free_port()
    url = postgres_server.url("init_waits").replace(f":{postgres_server.port}/", f":{port}/")
    process = _init(url, tmp_path, "--wait", "60")
    try:
        assert process.stderr is not None
        said = process.stderr.readline()  # nothing listens on `port` yet
        assert said.startswith("waiting up to ") and f"127.0.0.1:{port}/init_waits" in said, said
        assert postgres_server.password not in said
        with forwarding(port, postgres_server.port):
            out, rest = process.communicate(timeout=90)
        assert process.returncode == 0, out + said + rest
        assert "database " in out
        with psycopg.connect(postgres_server.url("init_waits").replace("postgresql+psycopg", "postgresql")) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    finally:
        process.kill()
        postgres_server.drop_database("init_waits")


def test_init_gives_up_after_its_wait_naming_the_database_but_never_its_password(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    port = free_port()
    url = postgres_server.url("absent").replace(f":{postgres_server.port}/", f":{port}/")
    process = _init(url, tmp_path, "--wait", "1")
    out, said = process.communicate(timeout=60)
    assert process.returncode == 1, out + said
    assert f"error: cannot reach the database postgresql+psycopg://postgres:***@127.0.0.1:{port}/absent" in said
    assert postgres_server.password not in out + said
    assert "Traceback" not in said
