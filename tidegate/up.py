"""`tidegate up`: the embedded default on one machine, reconciling a config repo end to end.

It starts a real Redis on a unix socket, migrates the SQLite store, starts the sandbox stand-ins
(unless `--no-sandbox`), a `tidegate worker` and a `tidegate beat` process, registers the repo
and watches it (a local commit triggers a poll at once), then prints progress until Ctrl-C — or,
with `--exit-when-synced`, until every environment has settled at the head of the repository as it
was when `up` started (see `settled`).
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
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select

from reconciler import observations, repositories
from reconciler.sources.watch import LocalRefWatcher
from repo_schema.issues import InvalidRepo
from repo_schema.loader import LoadedRepo, load_repo
from store import Repository
from store.files import private_directory
from tidegate.cli_reconcile import status_line
from tidegate.client import EnvironmentView, LocalClient
from tidegate.extras import require_sandbox
from tidegate.progress import HEARTBEAT, SETTLED, progress_of
from tidegate.redis_server import EmbeddedRedis
from tidegate.sandbox_host import enqueue_previews, host_settings, start_host
from tidegate.settings import Settings
from tidegate.wiring import open_store, terraform_plugin_dirs
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


@dataclass(frozen=True)
class Settled:
    """Every environment has settled at the head, or (`failed`) a sync of the head failed."""

    failed: tuple[EnvironmentView, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


def settled(loaded: LoadedRepo, views: list[EnvironmentView], head: str) -> Settled | None:
    """Whether every environment has settled at `head`, the repository's head when `up` started:
    Synced and Healthy there (by its last sync, which succeeded), or AwaitingApproval for a sync
    of `head` (approval is a person's move, not ours to wait for). An environment Synced at an
    older revision has not settled: new commits wait for it. A failed sync of `head` ends the wait,
    naming the environment; one of an older revision does not (the head's sync comes after it).
    None while anything is still to happen."""
    by_name = {view.name: view for view in views}
    known = [by_name[name] for name in loaded.order() if name in by_name]
    failed = tuple(view for view in known if view.last_sync_status == "failed" and view.last_sync_revision == head)
    if failed:
        return Settled(failed)
    if len(known) < len(loaded.order()) or not all(_settled_at(view, head) for view in known):
        return None
    return Settled()


def _settled_at(view: EnvironmentView, head: str) -> bool:
    if view.sync_status == "AwaitingApproval":
        return view.last_sync_revision == head
    return (view.sync_status == "Synced" and view.health == "Healthy" and view.revision == head
            and view.last_sync_status == "succeeded")


def head_of(url: str, branch: str) -> str:
    """The commit `branch` points at in the local repository `url`: what `--exit-when-synced` waits for."""
    return subprocess.run(["git", "-C", url, "rev-parse", "--verify", "--end-of-options", f"{branch}^{{commit}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def up(
    repo: Annotated[Path, typer.Option("--repo", help="Config repo: a git work tree, or a directory to seed one from.")]
    = EXAMPLE,
    exit_when_synced: Annotated[bool, typer.Option("--exit-when-synced", help="Exit 0 once every environment has "
                                                   "settled at the repository's head as it is now: Synced there, or "
                                                   "AwaitingApproval for a sync of it (1 when a sync of it fails).")]
    = False,
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
    store = open_store(settings)
    with store.database.session() as db:  # what an earlier run saw may be gone: look again first
        observations.request(db)
    redis = stack.enter_context(EmbeddedRedis(data / "redis"))
    err.print(f"redis: {redis.socket_path}", markup=False)
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": redis.client_url}
    mirrors = terraform_plugin_dirs(settings)  # found once here, not again by every worker
    if mirrors:
        env["TIDEGATE_TERRAFORM_PLUGIN_DIRS"] = mirrors
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
    head = head_of(url, branch)
    name = repo.resolve().name
    host = None
    if sandbox and Path(url).is_dir():  # its pull requests: a small local Gitea stands in for the host
        host = stack.enter_context(start_host(Path(url), name, data))
        err.print(f"sandbox: Git host {host.api_url} for {host.full_name} "
                  "(`tidegate sandbox pr BRANCH` opens a pull request; the workers preview it)", markup=False)
    repository_id = register_repository(services, loaded, url, branch, name, host_settings(host) if host else None)
    if host is not None:
        enqueue_previews(host, repository_id, child_settings)
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
    if exit_when_synced:
        err.print(f"waiting for every environment to settle at {branch} {head[:12]}", markup=False)
    return _watch(LocalClient(services), loaded, processes, exit_when_synced, timeout, started, data, head)


def register_repository(services: object, loaded: LoadedRepo, url: str, branch: str, name: str,
              host: repositories.HostSettings | None = None) -> int:
    """The repository's id, registered now or by an earlier `up`; `host` (the sandbox's Git host,
    which listens on a new port and token each time) replaces what an earlier run stored."""
    from reconciler.runtime import Services
    assert isinstance(services, Services)
    interval = int(loaded.sync_policy(loaded.order()[0]).interval.total_seconds()) if loaded.order() else 120
    with services.database.session() as session:
        found = session.scalars(select(Repository).where(Repository.url == url)).first()
        if found is None:
            found = repositories.register(services, session, name=name, url=url, branch=branch,
                                          interval_seconds=interval, host=host)
        elif host is not None:
            found.host, found.host_api_url, found.host_repository = host.host, host.api_url, host.repository
            found.host_token = services.secrets.seal(host.token) if host.token else None
        return found.id


def _watch(client: LocalClient, loaded: LoadedRepo, processes: list[subprocess.Popen[bytes]],
           exit_when_synced: bool, timeout: float, started: float, data: Path, head: str) -> int:
    shown: dict[str, str] = {}
    announced, said_at = False, time.monotonic()
    refusals: set[str] = set()
    while True:
        for process in processes:
            if process.poll() is not None:
                err.print(f"a Tidegate process exited with {process.returncode}; see {data / 'logs'}", markup=False)
                return 1
        for report in client.workers():
            if not report.sealed and report.worker not in refusals:
                refusals.add(report.worker)
                err.print(f"worker {report.worker} refuses repository code: {report.reason}", markup=False)
        views = client.status()
        for view in views:
            change = change_of(view)
            if shown.get(view.name) != change:
                shown[view.name], said_at = change, time.monotonic()
                out.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {status_line(view)}")
                if view.sync_status == "AwaitingApproval" and view.last_sync is not None:
                    _announce_approval(client, view)
        if time.monotonic() - said_at >= HEARTBEAT:  # never silent while a sync runs
            said_at = time.monotonic()
            for running in _running(client, views):
                out.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {escape(running)}")
        state = settled(loaded, views, head)
        if state is not None and not announced:
            announced = True
            out.print(verdict(state, head) + f" in {time.monotonic() - started:.1f}s; `tidegate status`, "
                      "`tidegate history ENV`, `tidegate show SYNC_ID --logs`"
                      + ("" if exit_when_synced else "; Ctrl-C stops everything"))
            for sentence in sentences(views):
                out.print(f"  {sentence}", markup=False)
            if exit_when_synced:
                return 0 if state.ok else 1
        if exit_when_synced and time.monotonic() - started > timeout:
            err.print(f"not settled after {timeout:g}s", markup=False)
            return 1
        time.sleep(1.0)


def change_of(view: EnvironmentView) -> str:
    """The status line without the observation's age, which changes every second: `up` prints a line when
    the environment changes, not when the clock does."""
    return status_line(replace(view, observed_at=None)) + ("observed" if view.observed_at else "")


def _running(client: LocalClient, views: list[EnvironmentView]) -> list[str]:
    """Where each environment's unfinished sync is (stage, step, counts), for the heartbeat."""
    return [f"{view.name}: {progress_of(client.show_sync(view.last_sync)).state()}" for view in views
            if view.last_sync is not None and view.last_sync_status not in (*SETTLED, None)]


def sentences(views: list[EnvironmentView]) -> list[str]:
    """One true sentence per environment, as `up` ends: what it is, or what it waits for and how to
    move it on."""
    said = []
    for view in views:
        if view.sync_status == "AwaitingApproval" and view.last_sync is not None:
            said.append(f"{view.name} waits for approval of sync #{view.last_sync}: "
                        f"`tidegate approve {view.last_sync}`")
        elif view.last_sync_status == "failed":
            said.append(f"{view.name}'s sync #{view.last_sync} failed: {view.message or 'no message'}")
        elif view.revision is None:
            said.append(f"{view.name} has not synced yet")
        else:
            said.append(f"{view.name} is {view.sync_status} and {view.health} at {view.revision[:7]}")
    return said


def verdict(state: Settled, head: str) -> str:
    """The line `up` prints once settled (rich markup): at which head, or whose sync of it failed and why."""
    if state.ok:
        return f"[green]reconciled[/green] at {head[:12]}"
    failed = "; ".join(f"{view.name} (sync #{view.last_sync}: {view.message or 'no message'})"
                       for view in state.failed)
    return f"[red]a sync of {head[:12]} failed[/red]: {escape(failed)}"


def _announce_approval(client: LocalClient, view: EnvironmentView) -> None:
    assert view.last_sync is not None
    sync = client.show_sync(view.last_sync)
    out.print(f"  {view.name} waits for approval of sync #{sync.id} (plan {(sync.fingerprint or '')[:16]}):",
              markup=False)
    for stage, plan in sync.plan.items():
        out.print(f"    {stage}: {plan.get('summary')}", markup=False)
    out.print(f"  approve with: tidegate approve {sync.id} [--as USER] (a user its approval policy names, who wrote "
              "none of the change; --as needs an admin once users exist)", markup=False)
