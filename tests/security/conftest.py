"""Attacks on Tidegate's change control, each told as a story against real parts.

Shared here: a data directory like a worker's (a real `secret.key`) with this process's seal
installed as a worker installs it (hiding that directory from repository code), and a local HTTP
server that counts the requests it gets (to prove nothing was fetched).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from providers import sealed
from store import load_or_create_key
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis
from tidegate.settings import Settings
from tidegate.wiring import install_seal


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass
class WorkerData:
    """A worker's data directory with its generated secret key, and the seal hiding it."""

    path: Path
    key: str
    seal: sealed.Seal

    @property
    def key_file(self) -> Path:
        return self.path / "secret.key"


@pytest.fixture
def worker_data(tmp_path: Path) -> Iterator[WorkerData]:
    previous = sealed.current()
    data = tmp_path / "data"
    key = load_or_create_key(data)
    seal = install_seal(Settings(data_dir=data))
    assert seal.status().sealed, seal.status().reason
    try:
        yield WorkerData(data, key, seal)
    finally:
        sealed.configure(previous)


@dataclass
class CountingServer:
    """An HTTP server on loopback that answers 200 with a small kustomization and counts requests."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def counting_server() -> Iterator[CountingServer]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CountingServer(f"http://127.0.0.1:{server.server_address[1]}/", seen)
    finally:
        server.shutdown()
        server.server_close()
