"""`tidegate up`: the embedded default on one machine, reconciling a config repo end to end.

It starts a real Redis on a unix socket, migrates the SQLite store, starts the sandbox stand-ins
(unless `--no-sandbox`), a `tidegate worker` and a `tidegate beat` process, registers the repo
and watches it (a local commit triggers a poll at once), then prints progress until Ctrl-C — or,
with `--exit-when-synced`, until every environment that needs no approval is Synced and Healthy.
Everything it started is stopped on the way out, in reverse order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select

from reconciler import repositories
from reconciler.sources.watch import LocalRefWatcher
from repo_schema.issues import InvalidRepo
from repo_schema.loader import LoadedRepo, load_repo
from store import Repository
from store.files import private_directory
from tidegate.cli_reconcile import status_line
from tidegate.client import EnvironmentView, LocalClient
from tidegate.extras import require_sandbox
from tidegate.redis_server import EmbeddedRedis
from tidegate.settings import Settings
from tidegate.wiring import open_store
from tidegate.worker import build_services, make_app

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "infra-repo"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Tidegate demo", "GIT_AUTHOR_EMAIL": "demo@tidegate.invalid",
                "GIT_COMMITTER_NAME": "Tidegate demo", "GIT_COMMITTER_EMAIL": "demo@tidegate.invalid"}


class Stop(Exception):
    """Ctrl-C or SIGTERM."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def git_repository(path: Path, data_dir: Path) -> tuple[str, str]:
    """(url, branch) to register: the repo itself when `path` is a git work tree's top, else a local
    git repository seeded once from `path` in the data directory (commit there to see a sync)."""
    path = path.resolve()
    top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == path:
        branch = subprocess.run(["git", "-C", str(path), "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        return str(path), branch
    seeded = data_dir / "repos" / path.name
    if not (seeded / ".git").is_dir():
        shutil.copytree(path, seeded, symlinks=True, dirs_exist_ok=True)
        env = {**os.environ, **GIT_IDENTITY}
        for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", f"Seed from {path}"]):
            subprocess.run(["git", "-C", str(seeded), *argv], check=True, env=env)
        err.print(f"seeded a git repository from {path} at {seeded} (commit there to see Tidegate react)",
                  markup=False)
    branch = subprocess.run(["git", "-C", str(seeded), "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    return str(seeded), branch


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    handle = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([sys.executable, "-m", "tidegate", *argv], env=env, stdout=handle, stderr=handle,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _terminate(processes: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def settled(loaded: LoadedRepo, views: list[EnvironmentView]) -> bool | None:
    """True when every environment needing no approval is Synced and Healthy (gated ones wait for
    approval or are synced too); False when one's latest sync failed; None while still working."""
    by_name = {view.name: view for view in views}
    for name in loaded.order():
        view = by_name.get(name)
        if view is None:
            return None
        if view.last_sync_status == "failed":
            return False
        gated = loaded.environments[name].spec.approval.required
        done = view.sync_status == "Synced" and view.health == "Healthy" and view.last_sync_status == "succeeded"
        if gated and view.sync_status == "AwaitingApproval":
            continue
        if not done:
            return None
    return True


def up(
    repo: Annotated[Path, typer.Option("--repo", help="Config repo: a git work tree, or a directory to seed one from.")]
    = EXAMPLE,
    exit_when_synced: Annotated[bool, typer.Option("--exit-when-synced", help="Exit 0 once every environment that "
                                                   "needs no approval is Synced and Healthy (1 on failure).")] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox/--no-sandbox", help="Local stand-ins for AWS, clusters and "
                                          "nodes.")] = True,
    ssh: Annotated[bool, typer.Option("--ssh/--local", help="Sandbox nodes as SSH hosts (needs root) or a local "
                                      "connection.")] = True,
    timeout: Annotated[float, typer.Option(help="With --exit-when-synced: give up after this many seconds.")] = 1800.0,
) -> None:
    """API-less embedded default: Redis, store, sandbox, worker and scheduler; reconcile REPO end to end."""
    if sandbox:
        require_sandbox("tidegate up with its sandbox (--no-sandbox runs without it)")
    settings = Settings()
    previous = {number: signal.signal(number, _stop) for number in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    code = 0
    with ExitStack() as stack:
        try:
            code = _run(settings, stack, repo, exit_when_synced, sandbox, ssh, timeout, started)
        except Stop:
            err.print("stopping …", markup=False)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    err.print("stopped", markup=False)
    raise typer.Exit(code)


def _run(settings: Settings, stack: ExitStack, repo: Path, exit_when_synced: bool, sandbox: bool, ssh: bool,
         timeout: float, started: float) -> int:
    data = settings.data_dir
    private_directory(data)
    try:
        loaded = load_repo(repo)
    except InvalidRepo as invalid:
        for issue in invalid.issues:
            err.print(str(issue), markup=False)
        return 1
    open_store(settings)
    redis = stack.enter_context(EmbeddedRedis(data / "redis"))
    err.print(f"redis: {redis.socket_path}", markup=False)
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": redis.client_url}
    if sandbox:
        from tidegate.sandbox_session import SandboxSession  # the [sandbox] extra (checked in `up`)

        session = stack.enter_context(SandboxSession(loaded, data / "sandbox", ssh=ssh))
        env["TIDEGATE_SANDBOX_MAP"] = str(session.path)
        for name, kube in session.kube.items():
            path = kube.write_kubeconfig(data / "sandbox" / f"kubeconfig-{name}")
            err.print(f"sandbox: {name} cluster {kube.url} (kubectl --kubeconfig {path})", markup=False)
        err.print(f"sandbox: endpoint map {session.path}", markup=False)
    child_settings = Settings(data_dir=data, redis_url=redis.client_url,
                              sandbox_map=Path(env["TIDEGATE_SANDBOX_MAP"]) if sandbox else None)
    make_app(child_settings)
    services = build_services(child_settings)
    url, branch = git_repository(repo, data)
    repository_id = _register(services, loaded, url, branch, repo.resolve().name)
    processes = [_spawn("worker", ["worker"], env, data / "logs"), _spawn("beat", ["beat"], env, data / "logs")]
    stack.callback(_terminate, processes)
    err.print(f"worker and scheduler started; logs in {data / 'logs'}", markup=False)
    watcher = LocalRefWatcher(lambda key: services.queue.poll(repository_id))
    local = Path(url)
    if local.is_dir():
        watcher.add(str(repository_id), local)
        watcher.start()
        stack.callback(watcher.stop)
    services.queue.poll(repository_id)
    return _watch(LocalClient(services), loaded, processes, exit_when_synced, timeout, started, data)


def _register(services: object, loaded: LoadedRepo, url: str, branch: str, name: str) -> int:
    from reconciler.runtime import Services
    assert isinstance(services, Services)
    interval = int(loaded.sync_policy(loaded.order()[0]).interval.total_seconds()) if loaded.order() else 120
    with services.database.session() as session:
        found = session.scalars(select(Repository).where(Repository.url == url)).first()
        if found is not None:
            return found.id
        repository = repositories.register(services, session, name=name, url=url, branch=branch,
                                           interval_seconds=interval)
        return repository.id


def _watch(client: LocalClient, loaded: LoadedRepo, processes: list[subprocess.Popen[bytes]],
           exit_when_synced: bool, timeout: float, started: float, data: Path) -> int:
    shown: dict[str, str] = {}
    announced = False
    while True:
        for process in processes:
            if process.poll() is not None:
                err.print(f"a Tidegate process exited with {process.returncode}; see {data / 'logs'}", markup=False)
                return 1
        views = client.status()
        for view in views:
            line = status_line(view)
            if shown.get(view.name) != line:
                shown[view.name] = line
                out.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {line}")
                if view.sync_status == "AwaitingApproval" and view.last_sync is not None:
                    _announce_approval(client, view)
        state = settled(loaded, views)
        if state is not None and not announced:
            announced = True
            out.print(("[green]reconciled[/green]" if state else "[red]a sync failed[/red]")
                      + f" in {time.monotonic() - started:.1f}s; `tidegate status`, `tidegate history ENV`, "
                      "`tidegate show SYNC_ID --logs`" + ("" if exit_when_synced else "; Ctrl-C stops everything"))
            if exit_when_synced:
                return 0 if state else 1
        if exit_when_synced and time.monotonic() - started > timeout:
            err.print(f"not settled after {timeout:g}s", markup=False)
            return 1
        time.sleep(1.0)


def _announce_approval(client: LocalClient, view: EnvironmentView) -> None:
    assert view.last_sync is not None
    sync = client.show_sync(view.last_sync)
    out.print(f"  {view.name} waits for approval of sync #{sync.id} (plan {(sync.fingerprint or '')[:16]}):",
              markup=False)
    for stage, plan in sync.plan.items():
        out.print(f"    {stage}: {plan.get('summary')}", markup=False)
    out.print(f"  approve with: tidegate approve {sync.id}", markup=False)
