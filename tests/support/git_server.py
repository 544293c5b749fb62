"""Real git remotes for tests: bare repos on disk, served by `git daemon` or by `git http-backend`.

    with git_http_server(tmp_path / "srv", token="s3cret") as base:
        sha = make_bare_repo(tmp_path / "srv" / "config.git", {"tidegate.yaml": "..."})
        url = base + "config.git"
        new = commit_and_push(tmp_path / "srv" / "config.git", {"a.txt": "2"}, "change a")

Everything runs the real git binary with a fixed identity and without the machine's global or
system git config, so tests behave the same on every machine.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.test",
}

FileContent = str | bytes | None  # None deletes the file


def git_env(**extra: str) -> dict[str, str]:
    """A deterministic environment for test git commands: fixed identity, no user or system config."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        **IDENTITY,
        **extra,
    }


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run git and return its stdout; raise with stderr on failure (unless `check` is false)."""
    result = subprocess.run(["git", *args], cwd=cwd, env={**git_env(), **(env or {})},
                            capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def files_of(directory: Path) -> dict[str, FileContent]:
    """Every file below `directory` (e.g. examples/infra-repo), to seed a repo with it."""
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file() and ".git" not in path.parts}


class WorkClone:
    """A non-bare clone that writes files, commits and pushes, like a person working on the repo."""

    def __init__(self, remote: Path | str, path: Path, branch: str = "main") -> None:
        self.remote = str(remote)
        self.path = path
        self.branch = branch
        if not (path / ".git").exists():
            git("clone", "--quiet", self.remote, str(path))
            if git("ls-remote", "--heads", self.remote, branch, cwd=path).strip():
                git("checkout", "--quiet", branch, cwd=path)
            elif git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=path, check=False).strip():
                git("checkout", "--quiet", "-b", branch, cwd=path)
            else:  # an empty repository: the first commit starts the branch
                git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=path)

    def write(self, files: Mapping[str, FileContent]) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)

    def commit(self, message: str, files: Mapping[str, FileContent] | None = None) -> str:
        """Write `files`, commit everything (empty commits allowed) and return the new SHA."""
        self.write(files or {})
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, cwd=self.path)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def reset(self, sha: str) -> None:
        """Move the branch back (to rewrite history and force-push)."""
        git("reset", "--quiet", "--hard", sha, cwd=self.path)

    def push(self, *, force: bool = False) -> None:
        git("push", "--quiet", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{self.branch}",
            cwd=self.path)


def make_bare_repo(
    path: Path, files: Mapping[str, FileContent], *, branch: str = "main", message: str = "Initial commit"
) -> str:
    """Create a bare repo at `path` whose `branch` holds one commit with `files`; return its SHA."""
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    return commit_and_push(path, files, message, branch=branch)


def commit_and_push(
    remote: Path | str,
    files: Mapping[str, FileContent],
    message: str = "Change",
    *,
    branch: str = "main",
    parent: str | None = None,
    force: bool = False,
) -> str:
    """Commit `files` on top of `branch` (or of `parent`, to rewrite history) and push; return the SHA.

    With `parent` the push is forced, as a force-push after `git reset` would be.
    """
    with tempfile.TemporaryDirectory(prefix="work-clone-") as scratch:
        clone = WorkClone(remote, Path(scratch) / "work", branch)
        if parent is not None:
            clone.reset(parent)
        sha = clone.commit(message, files)
        clone.push(force=force or parent is not None)
    return sha


def delete_branch(remote: Path | str, branch: str) -> None:
    """Delete `branch` from the remote, as `git push origin :branch` does."""
    with tempfile.TemporaryDirectory(prefix="pusher-") as scratch:
        git("init", "--quiet", scratch)
        git("push", "--quiet", str(remote), f":refs/heads/{branch}", cwd=Path(scratch))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def closed_port_url(name: str = "repo.git") -> str:
    """A git:// URL where nothing listens, for unreachable-remote tests."""
    return f"git://127.0.0.1:{free_port()}/{name}"


@contextmanager
def git_daemon(base_dir: Path, port: int | None = None) -> Iterator[str]:
    """Serve every repo under `base_dir` over git:// (push enabled); yields `git://127.0.0.1:PORT/`.
    A given `port` is the one a restarted server must come back on (the repository URL names it)."""
    wanted = port
    for _ in range(5 if wanted is None else 50):
        port = wanted or free_port()
        process = subprocess.Popen(
            ["git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr", "--listen=127.0.0.1",
             f"--port={port}", f"--base-path={base_dir}", str(base_dir)],
            env=git_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if _wait_listening(port, process):
            break
        _stop(process)
    else:
        raise RuntimeError("git daemon did not start")
    try:
        yield f"git://127.0.0.1:{port}/"
    finally:
        _stop(process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the daemon and the per-connection children it forked (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class _GitHttpHandler(BaseHTTPRequestHandler):
    """Smart HTTP through `git http-backend` run as CGI, behind optional Basic token auth."""

    server: _GitHttpServer

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        self._serve(self._body())

    def log_message(self, format: str, *args: object) -> None:
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self, body: bytes) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Authorization")))
        user = self._authenticated_user()
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, headers, payload = self._run_backend(body, user)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authenticated_user(self) -> str | None:
        token = self.server.token
        if token is None:
            return "anonymous"
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return None
        return user if hmac.compare_digest(password.encode(), token.encode()) else None

    def _run_backend(self, body: bytes, user: str) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(self.path)
        env = git_env(
            GIT_PROJECT_ROOT=str(self.server.base_dir),
            GIT_HTTP_EXPORT_ALL="1",
            GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.receivepack", GIT_CONFIG_VALUE_0="true",
            REMOTE_USER=user, REMOTE_ADDR=self.client_address[0],
            GATEWAY_INTERFACE="CGI/1.1", SERVER_PROTOCOL="HTTP/1.1",
            REQUEST_METHOD=self.command, PATH_INFO=url.path, QUERY_STRING=url.query,
            CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
        )
        for header, variable in (("Git-Protocol", "GIT_PROTOCOL"), ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(header):
                env[variable] = self.headers[header]
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, separator, payload = result.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        return status, headers, payload


class _GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, base_dir: Path, token: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.base_dir = base_dir
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []


@contextmanager
def git_http_server(base_dir: Path, token: str | None = None) -> Iterator[str]:
    """Serve repos under `base_dir` over smart HTTP; yields `http://127.0.0.1:PORT/`.

    With `token`, every request needs `Authorization: Basic base64(<any user>:<token>)`, else 401.
    """
    server = _GitHttpServer(base_dir, token)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="git-http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def remove_tree(path: Path) -> None:
    """Delete a tree that may hold read-only checkouts."""
    for current, _, _ in os.walk(path):
        os.chmod(current, 0o755)
    shutil.rmtree(path, ignore_errors=True)
