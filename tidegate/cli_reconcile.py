"""CLI commands of the reconciler: repositories, status, sync, history, drift, approvals, and the
processes (`worker`, `beat`, `up`). Composition only: each command calls the client interface."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from reconciler import repositories
from reconciler.runtime import Services, hand_off
from reconciler.sources.git import safe_url
from store import GitHost, Repository
from store.files import private_directory
from tidegate.client import DEFERRED, Client, ClientError, EnvironmentView, LocalClient, SyncView
from tidegate.http_client import HttpClient
from tidegate.progress import watch_sync
from tidegate.settings import Settings
from tidegate.wiring import missing_store
from tidegate.worker import build_services, install, make_app

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
repo_app = typer.Typer(help="Registered config repositories.", no_args_is_help=True)

_STATUS_COLOUR = {"Synced": "green", "OutOfSync": "yellow", "AwaitingApproval": "cyan", "Drifted": "magenta",
                  "Unknown": "dim"}
_HEALTH_COLOUR = {"Healthy": "green", "Progressing": "yellow", "Degraded": "red", "Missing": "red",
                  "Suspended": "dim", "Unknown": "dim"}


def services(settings: Settings | None = None) -> Services:
    """The in-process services over an existing store; a missing one is a clear error, not a
    traceback, and nothing is created in a data directory that holds no store."""
    settings = settings or Settings()
    missing = missing_store(settings)
    if missing is not None:
        raise _fail(ValueError(f"{missing}: `tidegate init` creates one (`tidegate up` too). The demo keeps its "
                               "store in .demo: export TIDEGATE_DATA_DIR=$PWD/.demo, or point "
                               "TIDEGATE_DATA_DIR or TIDEGATE_DATABASE_URL at yours"))
    make_app(settings)
    return build_services(settings)


def client() -> Client:
    """Over HTTP when TIDEGATE_SERVER names a `tidegate serve` (with TIDEGATE_TOKEN), else in-process."""
    settings = Settings()
    if settings.server:
        if settings.token is None:
            raise _fail(ValueError("TIDEGATE_SERVER is set but TIDEGATE_TOKEN is not (`tidegate token create`)"))
        return HttpClient(settings.server, settings.token.get_secret_value())
    return LocalClient(services(settings))


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[red]error[/red] {escape(str(error))}")
    return typer.Exit(1)


# --- repositories ----------------------------------------------------------------------------

@repo_app.command("add")
def repo_add(
    name: Annotated[str, typer.Argument(help="A short name, e.g. infra.")],
    url: Annotated[str, typer.Argument(help="Git URL or local path of the config repo.")],
    branch: Annotated[str, typer.Option(help="Branch to follow.")] = "main",
    interval: Annotated[int, typer.Option(help="Seconds between polls (plus jitter).")] = 120,
    token_env: Annotated[str | None, typer.Option(help="Environment variable holding an HTTPS token.")] = None,
    ssh_key: Annotated[Path | None, typer.Option(help="Private key file for SSH URLs.")] = None,
    host: Annotated[GitHost, typer.Option(help="Git host of its pull requests (webhooks, comments).")]
    = GitHost.GENERIC,
    host_api_url: Annotated[str | None, typer.Option(help="The host's REST API, e.g. https://api.github.com.")]
    = None,
    host_repository: Annotated[str | None, typer.Option(help="owner/name (GitLab: project path) on the host.")]
    = None,
    host_token_env: Annotated[str | None, typer.Option(help="Variable holding the host API token.")] = None,
    webhook_secret_env: Annotated[str | None, typer.Option(help="Variable holding this repository's webhook "
                                                           "secret (default TIDEGATE_WEBHOOK_SECRET).")] = None,
) -> None:
    """Register a config repository (credentials and secrets are stored encrypted) and poll it now."""
    credentials: dict[str, str] = {}
    if token_env:
        credentials["token"] = _from_env("--token-env", token_env)
    if ssh_key:
        credentials["ssh_private_key"] = ssh_key.read_text()
    svc = services()
    with svc.database.session() as session:
        if session.scalars(select(Repository).where(Repository.name == name)).first():
            raise _fail(ValueError(f"a repository named {name!r} is already registered"))
        settings = repositories.HostSettings(
            host, host_api_url, host_repository,
            _from_env("--host-token-env", host_token_env) if host_token_env else None,
            _from_env("--webhook-secret-env", webhook_secret_env) if webhook_secret_env else None)
        try:
            repository = repositories.register(svc, session, name=name, url=url, branch=branch,
                                               interval_seconds=interval, credentials=credentials or None,
                                               host=settings)
        except repositories.CredentialsInUrl as refused:
            raise _fail(refused) from None
        repository_id = repository.id
    if hand_off(partial(svc.queue.poll, repository_id), f"first poll of {name}"):
        out.print(f"registered {name} ({safe_url(url)}, branch {branch}); polling now", markup=False)
    else:
        out.print(f"registered {name} ({safe_url(url)}, branch {branch}); the broker is down, the scheduler "
                  "polls it once it is back", markup=False)


def _from_env(option: str, variable: str) -> str:
    """A secret named by an environment variable (never taken on the command line, where ps shows it)."""
    value = os.environ.get(variable)
    if not value:
        raise _fail(ValueError(f"{option} {variable}: the variable is not set"))
    return value


@repo_app.command("list")
def repo_list() -> None:
    """Registered repositories, their head and the last poll's problem, if any."""
    svc = services()
    with svc.database.session() as session:
        for r in session.scalars(select(Repository).order_by(Repository.name)):
            head = (r.head_sha or "-")[:12]
            problem = f"  ! {r.poll_error}" if r.poll_error else ""
            out.print(f"{r.name:<16} {r.branch:<12} {head:<12} {safe_url(r.url)}{problem}", markup=False)


# --- status and history ----------------------------------------------------------------------

class Output(StrEnum):
    """`-o`: a document for scripts (json, yaml) or a wider table for people."""

    json = "json"
    yaml = "yaml"
    wide = "wide"


OUTPUT_HELP = "json or yaml: one document (a list, or the sync object) for scripts; wide: more columns."
OutputOption = Annotated[Output | None, typer.Option("--output", "-o", help=OUTPUT_HELP)]


def plain(value: Any) -> Any:
    """A view (dataclass) as JSON/YAML-ready data: datetimes in ISO-8601, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_document(value: Any, output: Output) -> None:
    """One JSON or YAML document on stdout (nothing else goes there, so it parses as a whole)."""
    data = plain(value)
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")


def status_line(view: EnvironmentView, *, wide: bool = False) -> str:
    status = f"[{_STATUS_COLOUR.get(view.sync_status, 'white')}]{view.sync_status:<16}[/]"
    health = f"[{_HEALTH_COLOUR.get(view.health, 'white')}]{view.health:<11}[/]"
    revision = (view.revision or "-")[:12]
    extra = []
    if view.paused:
        extra.append("auto-sync paused")
    if view.open_drift:
        extra.append(f"{view.open_drift} open drift report(s)")
    if view.last_sync is not None:
        extra.append(f"last sync #{view.last_sync} {view.last_sync_status}")
    if view.message and view.last_sync_status in ("failed", "pending"):
        extra.append(escape(view.message))
    if view.observation:
        extra.append(escape(view.observation.splitlines()[0]))
    observed = f"{observed_ago(view.observed_at):<13}"
    line = f"{escape(view.name):<12} {revision:<12} {status} {health} {observed} {'; '.join(extra)}"
    if wide:
        line = f"{escape(view.repository):<12} {escape(view.name):<12} {revision:<12} " \
               f"{(view.last_sync_revision or '-')[:12]:<12} {status} {health} {observed} {'; '.join(extra)}"
    return line


def observed_ago(moment: str | None, now: datetime | None = None) -> str:
    """When the live world was last read, as an age ("12s ago", "3m ago", "never")."""
    if not moment:
        return "never"
    seen = datetime.fromisoformat(moment)
    seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - seen).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def status(as_json: Annotated[bool, typer.Option("--json", help="Deprecated (use -o json): one JSON object per "
                                                 "environment, one per line.")] = False,
           output: OutputOption = None) -> None:
    """One line per environment: name, revision, sync status, health; then any worker that cannot
    seal repository code (it refuses every sync), on stderr with -o json/yaml."""
    connected = client()
    views = connected.status()
    document = as_json or output in (Output.json, Output.yaml)
    if as_json:
        for view in views:
            sys.stdout.write(json.dumps(dataclasses.asdict(view)) + "\n")
    elif output in (Output.json, Output.yaml):
        print_document(views, output)
    else:
        _status_table(views, wide=output is Output.wide)
    for report in connected.workers():
        if not report.sealed:
            message = f"worker {report.worker} refuses repository code: {report.reason}"
            if document:
                sys.stderr.write(message + "\n")
            else:
                out.print(f"[red]{escape(message)}[/]")


def _status_table(views: list[EnvironmentView], *, wide: bool) -> None:
    """The environments as a table: revision, sync status, health, when last observed, open drift
    reports and what else a person should know (paused, the last sync and why it failed)."""
    if not views:
        return
    now = clock()
    columns = [*(["REPOSITORY"] if wide else []), "ENVIRONMENT", "REVISION", *(["LAST SYNC OF"] if wide else []),
               "SYNC STATUS", "HEALTH", "LAST OBSERVED", "DRIFT", "NOTES"]
    rows = [[*([Text(view.repository)] if wide else []), Text(view.name), Text((view.revision or "-")[:12]),
             *([Text((view.last_sync_revision or "-")[:12])] if wide else []),
             Text(view.sync_status, style=_STATUS_COLOUR.get(view.sync_status, "")),
             Text(view.health, style=_HEALTH_COLOUR.get(view.health, "")), Text(observed_ago(view.observed_at, now)),
             Text(str(view.open_drift)), Text("; ".join(status_notes(view)))] for view in views]
    print_table(columns, rows, wrapping={"NOTES": 30})


def status_notes(view: EnvironmentView) -> list[str]:
    """What the status table's NOTES say of an environment."""
    notes = []
    if view.paused:
        notes.append("auto-sync paused")
    if view.last_sync is not None:
        notes.append(f"last sync #{view.last_sync} {view.last_sync_status}")
    if view.message and view.last_sync_status in ("failed", "pending"):
        notes.append(view.message)
    if view.observation:
        notes.append(view.observation.splitlines()[0])
    return notes


def clock() -> datetime:
    """Now, for ages ("3m ago"); one place a test can fix it."""
    return datetime.now(UTC)


UNWRAPPED = 1000
"""Width of a table written to a pipe or file: no wrapping, one row a line, as `kubectl get` does."""


def print_table(columns: list[str], rows: list[list[Text]], *, wrapping: dict[str, int]) -> None:
    """A table with a header row, as wide as the terminal (COLUMNS when set): the `wrapping` columns
    wrap at word boundaries when the row does not fit, each kept at least as wide as given; the
    others never wrap. Written to a pipe, a row is one line. Trailing spaces are left out."""
    sized = bool(os.environ.get("COLUMNS")) or sys.stdout.isatty()
    width = Console().width if sized else UNWRAPPED
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", show_edge=False)
    for name in columns:
        table.add_column(name, no_wrap=name not in wrapping, overflow="fold", min_width=wrapping.get(name))
    for row in rows:
        table.add_row(*row)
    lines = _rendered(table, width)
    for narrower in range(width - 1, width - 8, -1):  # rich's shrinking of wrapped columns can come out a
        if max(map(len, lines), default=0) <= width:  # character or two wider than asked
            break
        lines = _rendered(table, narrower)
    sys.stdout.write("".join(line + "\n" for line in lines))


def _rendered(table: Table, width: int) -> list[str]:
    console = Console(highlight=False, width=width)
    with console.capture() as captured:
        console.print(table, crop=False)
    return [line.rstrip() for line in captured.get().splitlines()]


def history(environment: Annotated[str, typer.Argument(help="ENV or REPO/ENV")],
            limit: Annotated[int, typer.Option(help="How many syncs.")] = 20,
            output: OutputOption = None) -> None:
    """An environment's syncs, newest first: trigger (`rollback` for `sync --revision`), how long it
    took, the commit's subject, who approved it, and why it failed if it did."""
    try:
        views = client().history(environment, limit)
    except ClientError as error:
        raise _fail(error) from None
    if output in (Output.json, Output.yaml):
        print_document(views, output)
        return
    if views:
        wide = output is Output.wide
        columns = ["SYNC", "CREATED", "REVISION", "TRIGGER", "STATUS", "TOOK", *(["FINGERPRINT"] if wide else []),
                   "COMMIT", "APPROVED BY", "MESSAGE"]
        print_table(columns, [history_row(view, wide=wide) for view in views],
                    wrapping={"COMMIT": 20, "APPROVED BY": 11, "MESSAGE": 16})


MESSAGE_WIDTH = 72
"""Characters of a failed sync's first error line in the history table, cut at a word (`show` has it all)."""


def history_row(view: SyncView, *, wide: bool = False) -> list[Text]:
    """One sync as a history row (plain text: commit subjects and messages are not markup)."""
    took = duration(view.finished_at - view.created_at) if view.finished_at is not None else "-"
    fingerprint = [Text((view.fingerprint or "-")[:16])] if wide else []
    return [Text(f"#{view.id}"), Text(view.created_at.strftime("%Y-%m-%d %H:%M")), Text((view.revision or "-")[:12]),
            Text("rollback" if view.rollback else view.trigger), Text(view.status), Text(took, justify="right"),
            *fingerprint, Text(first_line(view.commit_subject, 200) or "-"),
            Text(", ".join(view.approvers) or "-"), Text(first_line(view.error or "", MESSAGE_WIDTH))]


def when(moment: datetime) -> str:
    """A stored time (UTC) as the tables print it."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(span: timedelta) -> str:
    """`42s`, `3m07s`, `2h05m`: how long something took, at the precision a reader needs."""
    seconds = max(0, round(span.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def first_line(text: str, width: int) -> str:
    """The first line of a message, cut at a word boundary with `…` when longer than `width`."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= width:
        return line
    cut = line[:width - 1].rsplit(" ", 1)[0] if " " in line[:width - 1] else line[:width - 1]
    return cut.rstrip(" ,;:") + "…"


def show(sync_id: Annotated[int, typer.Argument(help="Sync id.")],
         logs: Annotated[bool, typer.Option("--logs", help="Print each stage's log.")] = False,
         diff: Annotated[bool, typer.Option("--diff/--no-diff", help="Each change's diff (secrets masked) under "
                                            "it, or only the changes.")] = True,
         output: OutputOption = None) -> None:
    """One sync: its commit, who approved it and when, its plan (per stage, each change with its diff),
    what each stage did and how long it took, and, with --logs, the logs."""
    try:
        view = client().show_sync(sync_id)
    except ClientError as error:
        raise _fail(error) from None
    if output in (Output.json, Output.yaml):
        print_document(view, output)
        return
    print_sync(view, logs=logs, diffs=diff)




def print_sync(view: SyncView, *, logs: bool = False, diffs: bool = False) -> None:
    out.print(f"sync #{view.id} {view.environment} at {(view.revision or '-')[:12]}: {view.status} "
              f"(trigger {'rollback' if view.rollback else view.trigger})", markup=False)
    if view.commit_subject:
        out.print(f"commit {view.commit_subject}", markup=False)
    if view.approvers:
        at = f" at {when(view.approved_at)} UTC" if view.approved_at else ""
        out.print(f"approved by {', '.join(view.approvers)}{at}", markup=False)
    if view.fingerprint:
        out.print(f"plan fingerprint {view.fingerprint}", markup=False)
    finished = {result.stage for result in view.stages if result.status == "succeeded"}
    for stage, plan in view.plan.items():
        out.print(f"  {stage}: {plan_summary(plan, applied=stage in finished)}", markup=False)
        _print_changes(plan.get("changes", []), diffs=diffs)
    for result in view.stages:
        seconds = f" in {duration(timedelta(seconds=result.seconds))}" if result.seconds is not None else ""
        counts = ", ".join(f"{count} {outcome}" for outcome, count in (result.summary.get("counts") or {}).items())
        why = result.summary.get("skipped") if result.status == "skipped" else None
        out.print(f"  result {result.stage}: {result.status}{seconds}{': ' + counts if counts else ''}"
                  f"{f' ({why})' if why else ''}", markup=False)
        if logs and result.log:
            out.print(result.log, markup=False)
    if view.error:
        out.print(f"error: {view.error}", markup=False)


def plan_summary(plan: dict[str, Any], *, applied: bool) -> str:
    """A stage's plan line. A stage deferred until infrastructure applied reads in the past tense once
    it succeeded: the pipeline now stores its real plan then (`planned_after_apply`), older syncs kept
    only "planned after infrastructure applies", which is no longer true of them."""
    summary = str(plan.get("summary") or "")
    if plan.get("planned_after_apply"):
        return f"{summary} (planned after infrastructure applied)"
    if (plan.get("deferred") or summary == DEFERRED) and applied:
        return "planned after infrastructure applied"
    return summary


def _print_changes(changes: list[dict[str, Any]], *, diffs: bool) -> None:
    from providers.ansible.stage import UNPREDICTABLE  # loads Ansible's modules: only when a sync is shown

    for change in changes[:200]:
        out.print(f"    {change['action']:<8} {change['address']}", markup=False)
        diff = str(change.get("diff") or "")
        if diffs and diff:
            out.print("\n".join(f"        {line}" for line in diff.splitlines()), markup=False)
        elif diff.startswith(UNPREDICTABLE):
            out.print(f"             {UNPREDICTABLE}", markup=False)


# --- acting ----------------------------------------------------------------------------------

def sync(
    environment: Annotated[str, typer.Argument(help="ENV or REPO/ENV")],
    revision: Annotated[str | None, typer.Option(help="Sync this (older) revision: a rollback; pauses auto-sync.")]
    = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the sync ends; exit 1 unless it succeeded.")]
    = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800.0,
) -> None:
    """Sync an environment now (its desired revision, or --revision SHA)."""
    local = client()
    try:
        sync_id = local.sync(environment, revision)
    except ClientError as error:
        raise _fail(error) from None
    out.print(f"sync #{sync_id} queued" + (" (auto-sync paused until `tidegate resume`)" if revision else ""),
              markup=False)
    if wait:
        raise typer.Exit(0 if _wait(local, sync_id, timeout) else 1)


def _wait(local: Client, sync_id: int, timeout: float) -> bool:
    """Watch the sync (stage, step, elapsed, counts) until it settles; True when it succeeded."""
    view = watch_sync(local, sync_id, timeout, err)
    if view is None:
        err.print(f"sync #{sync_id}: not settled after {timeout:g}s", markup=False)
        return False
    print_sync(view)
    return view.status == "succeeded"


def resume(environment: Annotated[str, typer.Argument(help="ENV or REPO/ENV")]) -> None:
    """Resume auto-sync (after a rollback): an environment behind its desired revision is synced to it
    at once (unless its repo says `automated: false`), and the repository is polled now."""
    connected = client()
    try:
        sync_id = connected.resume(environment)
    except ClientError as error:
        raise _fail(error) from None
    if sync_id is None:
        out.print(f"{environment}: auto-sync resumed", markup=False)
        return
    target = (connected.show_sync(sync_id).revision or "its desired revision")[:12]
    out.print(f"{environment}: auto-sync resumed; sync #{sync_id} queued to bring {environment} back to {target}",
              markup=False)


AS_HELP = ("Decide as this user: only an admin may (audited `admin X as Y`), or anyone in the local "
           "single-user mode (in-process, no users configured). Default: yourself (your API token, or the "
           "user named like your OS login).")


def approve(sync_id: Annotated[int, typer.Argument(help="The sync awaiting approval.")],
            user: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
            comment: Annotated[str, typer.Option(help="Why.")] = "",
            wait: Annotated[bool, typer.Option("--wait", help="Once approved, watch the apply until it ends; "
                                               "exit 1 unless it succeeded.")] = False,
            timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800.0) -> None:
    """Approve the one plan fingerprint a sync awaiting approval carries."""
    connected = client()
    try:
        decision = connected.approve(sync_id, comment, as_user=user)
    except ClientError as error:
        raise _fail(error) from None
    state = ("approved: applying" if decision.queued else "approved: applies once the broker is back") \
        if decision.approved else f"{decision.approvals}/{decision.required} approvals"
    out.print(f"sync #{sync_id} plan {decision.fingerprint[:16]}: {state}", markup=False)
    if decision.detail and not decision.approved:
        out.print(f"  {decision.detail}", markup=False)
    if wait and decision.approved:
        raise typer.Exit(0 if _wait(connected, sync_id, timeout) else 1)


def reject(sync_id: Annotated[int, typer.Argument(help="The sync awaiting approval.")],
           user: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
           comment: Annotated[str, typer.Option(help="Why.")] = "") -> None:
    """Reject a sync awaiting approval (it fails; nothing is applied)."""
    try:
        client().reject(sync_id, comment, as_user=user)
    except ClientError as error:
        raise _fail(error) from None
    out.print(f"sync #{sync_id} rejected", markup=False)


# --- processes -------------------------------------------------------------------------------

def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default TIDEGATE_WORKER_CONCURRENCY).")]
    = None,
    queues: Annotated[str, typer.Option(help="Queues to consume, comma-separated.")]
    = "poll,plan,apply,drift,preview",
    name: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
) -> None:
    """Run a Celery worker for the reconciler (several may run, on several machines)."""
    settings = Settings()
    app = make_app(settings)
    install(settings)
    argv = ["worker", "-Q", queues, "--concurrency", str(concurrency or settings.worker_concurrency),
            "--loglevel", settings.log_level, "-n", name or f"tidegate-{os.getpid()}@%h", "--without-gossip",
            "--without-mingle"]
    app.worker_main(argv)


def beat() -> None:
    """Run the scheduler: poll ticks, drift ticks and the sweeper (one per installation)."""
    settings = Settings()
    app = make_app(settings)
    # Beat opens no store, so nothing else creates the data dir: a fresh machine's or pod's volume
    # has none, and Celery's schedule file cannot be created in a missing directory.
    schedule = private_directory(settings.data_dir) / "beat-schedule"
    app.start(["beat", "--schedule", str(schedule), "--loglevel", settings.log_level])


def register(app: typer.Typer) -> None:
    app.add_typer(repo_app, name="repo")
    for command in (status, history, show, sync, resume, approve, reject, worker, beat):
        app.command(command.__name__)(command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
