"""`tidegate logs SYNC_ID [-f]`: a sync's stage logs, and with `-f` the lines as the stages produce
them, until the sync has finished. Composition only: the client interface reads them, in-process
(from the store, where a running stage's lines arrive every half second) or over HTTP (the API's
server-sent events, which the dashboard's sync page follows too).

On a terminal each line is prefixed with its stage (the stages run one after the other, so the
prefix changes three times at most); the sync's status goes to stderr at the end, so stdout holds
only log lines. `-o json` prints one document; with `-f`, one JSON object per line (a line of a
stage, then the sync's status last), for scripts that follow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from tidegate.cli_reconcile import client
from tidegate.client import ClientError, LogChunk, LogEvent, SyncView

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
STAGE_WIDTH = len("infrastructure")


class LogOutput(StrEnum):
    json = "json"


OUTPUT_HELP = "json: one document (with -f: one object a line, the status last)."


def logs(sync_id: Annotated[int, typer.Argument(help="Sync id (`tidegate history ENV` lists them).")],
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines as the stages "
                                              "produce them, until the sync has finished.")] = False,
         output: Annotated[LogOutput | None, typer.Option("--output", "-o", help=OUTPUT_HELP)] = None) -> None:
    """A sync's stage logs, each line prefixed with its stage; -f follows a running sync."""
    connected = client()
    try:
        if follow:
            _follow(sync_id, connected.follow_logs(sync_id), as_json=output is LogOutput.json)
        elif output is LogOutput.json:
            sys.stdout.write(json.dumps(log_document(connected.show_sync(sync_id)), indent=2) + "\n")
        else:
            view = connected.show_sync(sync_id)
            for stage in view.stages:
                for line in stage.log.splitlines():
                    out.print(stage_line(stage.stage, line), markup=False)
            err.print(f"sync #{sync_id}: {view.status}", markup=False)
    except ClientError as error:
        err.print(f"error {error}", markup=False)
        raise typer.Exit(1) from None


def _follow(sync_id: int, events: Iterator[LogEvent], *, as_json: bool) -> None:
    """Print each line as it arrives (flushed at once: a pipe would otherwise hold it back)."""
    for stage, line, status in lines_of(events):
        if status is not None:
            if as_json:
                sys.stdout.write(json.dumps({"sync": sync_id, "status": status}) + "\n")
            else:
                err.print(f"sync #{sync_id}: {status}", markup=False)
        elif as_json:
            sys.stdout.write(json.dumps({"stage": stage, "line": line}) + "\n")
        else:
            out.print(stage_line(stage, line), markup=False)
        sys.stdout.flush()


def lines_of(events: Iterable[LogEvent]) -> Iterator[tuple[str, str, str | None]]:
    """(stage, line, None) per line of the chunks, then ("", "", status) for the end."""
    for event in events:
        if isinstance(event, LogChunk):
            for line in event.text.splitlines():
                yield event.stage, line, None
        else:
            yield "", "", event.status


def stage_line(stage: str, line: str) -> str:
    return f"{stage:<{STAGE_WIDTH}} | {line}"


def log_document(view: SyncView) -> dict[str, Any]:
    """The sync's logs for scripts: per stage its status and its lines."""
    return {"sync": view.id, "status": view.status,
            "stages": [{"stage": stage.stage, "status": stage.status, "lines": stage.log.splitlines()}
                       for stage in view.stages]}


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
