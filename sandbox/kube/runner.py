"""Running the emulator: `KubeSandbox` on a background thread (tests), `serve()` in the foreground (the CLI).

`KubeSandbox` starts the aiohttp app on its own event loop in a daemon thread, on a free loopback
port, so that synchronous clients (requests, the official `kubernetes` client, kubectl) can talk to
it from the test thread. Its control methods (`requests()`, `inject()`, `drop_watches()`,
`compact()`) run on the server's loop, so they see a consistent store.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml
from aiohttp import web

from sandbox.kube.controllers import attach
from sandbox.kube.server import FaultRule, RequestInfo, ServerState, build_app
from sandbox.kube.store import Store
from sandbox.kube.tls import Certificates, certificates

T = TypeVar("T")
CONTEXT_NAME = "tidegate-sandbox"


def kubeconfig(server: str, token: str, ca_pem: bytes | None = None, name: str = CONTEXT_NAME) -> dict[str, Any]:
    """A kubeconfig for the emulator: HTTPS with the sandbox CA (or plain HTTP) and a bearer token."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }


def write_kubeconfig(path: str | Path, server: str, token: str, ca_pem: bytes | None = None) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(kubeconfig(server, token, ca_pem), sort_keys=False))
    target.chmod(0o600)
    return target


class KubeSandbox:
    """A fresh emulator on a background thread; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 bookmark_interval: float = 1.0, history_size: int = 1000, tls: bool = True,
                 controller_delay: float | None = 0.05, crd_delay: float = 0.2) -> None:
        self.host = host
        self.certs: Certificates | None = certificates(host) if tls else None
        self.requested_port = port
        self.token = token or secrets.token_hex(16)
        self.state = ServerState(Store(history_size=history_size, crd_delay=crd_delay), self.token, bookmark_interval)
        self.controllers = attach(self.state.store, controller_delay, self.certs.ca_pem if self.certs else None)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certs is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate as a file (for `requests`' `verify=`), or None over plain HTTP."""
        return self.certs.ca_file() if self.certs is not None else None

    def start(self) -> KubeSandbox:
        ready: Future[int] = Future()
        self._loop = asyncio.new_event_loop()

        async def boot() -> int:
            self._runner = web.AppRunner(build_app(self.state), handle_signals=False, access_log=None,
                                         shutdown_timeout=0.1)
            await self._runner.setup()
            context = self.certs.server_context() if self.certs is not None else None
            site = web.TCPSite(self._runner, self.host, self.requested_port, reuse_address=True,
                               ssl_context=context)
            await site.start()
            server = site._server
            assert server is not None and isinstance(server, asyncio.Server)
            port: int = server.sockets[0].getsockname()[1]
            return port

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                ready.set_result(self._loop.run_until_complete(boot()))
            except BaseException as exc:
                ready.set_exception(exc)
                return
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="kube-sandbox", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=10)
        return self

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None:
            return
        if runner is not None:
            self.call(self.state.drop_watches)
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    def __enter__(self) -> KubeSandbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop and return its result (store access from the test thread)."""
        assert self._loop is not None, "the sandbox is not running"

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def write_kubeconfig(self, path: str | Path) -> Path:
        return write_kubeconfig(path, self.url, self.token, self.certs.ca_pem if self.certs is not None else None)

    # ---------------------------------------------------------------- control
    def requests(self, verb: str | None = None, resource: str | None = None,
                 include_discovery: bool = True) -> list[dict[str, Any]]:
        def snapshot() -> list[RequestInfo]:
            return list(self.state.requests)

        out = []
        for entry in self.call(snapshot):
            if verb is not None and entry.verb != verb:
                continue
            if resource is not None and entry.resource != resource:
                continue
            if not include_discovery and not entry.resource:
                continue
            out.append(asdict(entry))
        return out

    def writes(self) -> list[dict[str, Any]]:
        """Requests that could change state (create, update, patch, delete, deletecollection), dry runs included."""
        write_verbs = {"create", "update", "patch", "delete", "deletecollection"}
        return [r for r in self.requests() if r["verb"] in write_verbs]

    def clear_requests(self) -> None:
        self.call(self.state.requests.clear)

    def inject(self, **rule: Any) -> FaultRule:
        fault = FaultRule(**rule)
        self.call(lambda: self.state.faults.append(fault))
        return fault

    def clear_faults(self) -> None:
        self.call(self.state.faults.clear)

    def drop_watches(self) -> int:
        return self.call(self.state.drop_watches)

    def compact(self) -> None:
        """Forget the watch history: resuming from any earlier resourceVersion answers 410 Expired."""
        self.call(self.state.store.compact)


def serve(port: int, kubeconfig_path: str | Path, host: str = "127.0.0.1", token: str | None = None,
          stop: threading.Event | None = None, on_ready: Callable[[str], None] | None = None,
          tls: bool = True, controller_delay: float | None = 1.0, crd_delay: float = 0.5) -> None:
    """Serve the emulator on `host:port` until SIGINT/SIGTERM (or `stop` is set), after writing a kubeconfig.

    Port 0 picks a free port; `on_ready(url)` is called once the kubeconfig is written. A new CRD is
    Established (and its types served) `crd_delay` seconds after its creation.
    """
    token = token or secrets.token_hex(16)
    certs = certificates(host) if tls else None
    state = ServerState(Store(crd_delay=crd_delay), token)
    attach(state.store, controller_delay, certs.ca_pem if certs is not None else None)

    async def main() -> None:
        runner = web.AppRunner(build_app(state), handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True,
                           ssl_context=certs.server_context() if certs is not None else None)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        bound = server.sockets[0].getsockname()[1]
        url = f"{'https' if certs is not None else 'http'}://{host}:{bound}"
        write_kubeconfig(kubeconfig_path, url, token, certs.ca_pem if certs is not None else None)
        if on_ready is not None:
            on_ready(url)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, done.set)
        if stop is not None:
            threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)),
                             daemon=True).start()
        try:
            await done.wait()
        finally:
            state.drop_watches()
            await runner.cleanup()

    asyncio.run(main())
