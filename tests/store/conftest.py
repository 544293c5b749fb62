"""Fixtures for the store tests: each database test runs on SQLite and on a real PostgreSQL.

The PostgreSQL server is a throwaway one this fixture starts itself (initdb + pg_ctl in a temporary
directory, loopback only), so the tests need the server binaries but no running service. Missing
binaries fail the run rather than skip it: a skipped PostgreSQL run would hide exactly the bugs
(types, transactions, quoting) that SQLite lets through.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import URL

from store import Database, SecretBox, sqlite_url, upgrade

BACKENDS = ["sqlite", "postgresql"]
PG_SYSTEM_USER = "tidegate-pg"
PG_SUPERUSER = "postgres"
PG_START_ATTEMPTS = 3
COMMAND_TIMEOUT_SECONDS = 120
MISSING_BINARIES = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH nor in "
    "/usr/lib/postgresql/*/bin. The store tests run on PostgreSQL as well as SQLite and never skip "
    "it: the test command installs them (`bash scripts/test.sh` runs `scripts/setup.sh --dev`, "
    "which installs the apt package `postgresql`); run that, or `apt-get install postgresql`."
)


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server reachable on 127.0.0.1 with a password, and its own socket dir."""

    port: int
    password: str
    socket_dir: Path
    server_version: int

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for one database of this server."""
        url = URL.create(
            "postgresql+psycopg",
            username=PG_SUPERUSER,
            password=self.password,
            host="127.0.0.1",
            port=self.port,
            database=database,
        )
        return url.render_as_string(hide_password=False)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database, for CREATE/DROP DATABASE."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=PG_SUPERUSER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        with self.admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database even if a test leaked a connection to it (FORCE exists from 13 on)."""
        force = sql.SQL(" WITH (FORCE)") if self.server_version >= 130000 else sql.SQL("")
        with self.admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


def find_postgres_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: PATH first, then the newest Debian one."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(debian, key=_version_key, reverse=True))
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort /usr/lib/postgresql/<version>/bin numerically (so 16 beats 9.6)."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


class _Runner:
    """Runs the server's commands as an unprivileged user: initdb and postgres refuse to run as root."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            account = _ensure_system_user(PG_SYSTEM_USER)
            self.prefix = [_require_tool("runuser"), "-u", PG_SYSTEM_USER, "--"]
            self.uid, self.gid = account.pw_uid, account.pw_gid

    def give(self, path: Path) -> None:
        """Hand a file or directory to the server's user (a no-op when not root)."""
        if self.prefix:
            os.chown(path, self.uid, self.gid)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a server command, output captured for the failure message, never hanging the session."""
        return subprocess.run(
            [*self.prefix, *command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )


def _require_tool(name: str) -> str:
    """The path of a system tool the root path needs, or a failure naming it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"running as root, the PostgreSQL fixture needs `{name}` (util-linux/passwd)", pytrace=False
        )
    return found


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Create the unprivileged system account once; tolerate another process creating it first."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = _require_tool("useradd")
    home = ["--home-dir", "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    result = subprocess.run([useradd, "--system", *home, name], capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"could not create system user {name}: {result.stderr.strip()}", pytrace=False)


def _free_port() -> int:
    """A loopback port free right now (the server may still lose it to a race, hence the retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    """Fail with the command's output and the server log's tail, which say why PostgreSQL refused."""
    if result.returncode == 0:
        return
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    pytest.fail(
        f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}", pytrace=False
    )


def _init_cluster(bin_dir: Path, workdir: Path, runner: _Runner) -> str:
    """initdb with a random superuser password; trust only on the private unix socket."""
    password = secrets.token_urlsafe(24)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password + "\n")
    runner.give(workdir)
    runner.give(pwfile)
    result = runner.run(
        str(bin_dir / "initdb"),
        *("-D", str(workdir / "data"), "-U", PG_SUPERUSER, f"--pwfile={pwfile}"),
        *("--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"),
    )
    _check(result, "initdb")
    return password


def _start_cluster(bin_dir: Path, workdir: Path, runner: _Runner) -> int:
    """Start on a free loopback port, retrying if another process took the port in between."""
    log = workdir / "postgres.log"
    for _attempt in range(PG_START_ATTEMPTS):
        port = _free_port()
        options = " ".join(
            f"-c {setting}"
            for setting in (
                f"port={port}",
                "listen_addresses=127.0.0.1",
                f"unix_socket_directories={shlex.quote(str(workdir))}",
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            )
        )
        pg_ctl = str(bin_dir / "pg_ctl")
        result = runner.run(
            pg_ctl, "-D", str(workdir / "data"), "-l", str(log), "-w", "-t", "60", "-o", options, "start"
        )
        if result.returncode == 0:
            return port
        if "Address already in use" not in log.read_text(errors="replace"):
            break
    _check(result, "pg_ctl start", log)
    raise AssertionError("unreachable")


def _server_version(port: int, password: str) -> int:
    """The server's version number (e.g. 150018), for version-dependent SQL such as DROP ... FORCE."""
    with psycopg.connect(
        host="127.0.0.1", port=port, user=PG_SUPERUSER, password=password, dbname="postgres"
    ) as c:
        return c.info.server_version


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, stopped and deleted afterwards."""
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(MISSING_BINARIES, pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-pg-"))
    runner = _Runner()
    started = False
    try:
        password = _init_cluster(bin_dir, workdir, runner)
        port = _start_cluster(bin_dir, workdir, runner)
        started = True
        yield PostgresServer(port, password, workdir, _server_version(port, password))
    finally:
        if started:
            runner.run(str(bin_dir / "pg_ctl"), "-D", str(workdir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of one database created on the session's server (for tests that share one)."""
    yield postgres_server.create_database("tidegate")
    postgres_server.drop_database("tidegate")


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each backend, fresh for every test."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"t_{secrets.token_hex(8)}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A fresh database of each backend, upgraded to the latest schema by the real migrations."""
    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A `Database` on a fresh, migrated database of each backend."""
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def box() -> SecretBox:
    """A SecretBox with a fresh random key."""
    return SecretBox(SecretBox.generate_key())
