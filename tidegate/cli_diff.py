"""`tidegate diff ENV`: what a sync of the environment's desired revision would change now, per stage,
planned read-only (nothing applied, nothing stored), as `argocd app diff` answers for an application.

Exit codes are `argocd app diff`'s, so scripts can gate on them: 0 when a sync would change nothing,
1 when it would change something, 2 when the environment or one of its stages could not be planned.
`-o json` prints one document (the stages, each change with its diff) whatever the exit code.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from reconciler.diffs import EnvironmentDiff, StageDiff
from tidegate.cli_reconcile import client, first_line
from tidegate.client import ClientError
from tidegate.settings import Settings
from tidegate.wiring import install_local_seal

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
NOTHING, CHANGES, FAILED = 0, 1, 2


class DiffOutput(StrEnum):
    json = "json"


def diff(environment: Annotated[str, typer.Argument(help="ENV or REPO/ENV")],
         output: Annotated[DiffOutput | None, typer.Option("--output", "-o", help="json: one document.")] = None,
         ) -> None:
    """What a sync of ENV's desired revision would change now, per stage (a read-only plan: nothing is
    applied or stored). Exit 0: nothing would change; 1: something would; 2: it could not be planned."""
    install_local_seal(Settings())  # the plan runs the repository's code, sealed where this machine can
    try:
        found = client().diff(environment)
    except ClientError as error:
        err.print(f"error {error}", markup=False)
        raise typer.Exit(FAILED) from None
    if output is DiffOutput.json:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
    else:
        for line in diff_text(found):
            out.print(line, markup=False)
    raise typer.Exit(FAILED if found.failed else CHANGES if found.has_changes else NOTHING)


def diff_text(found: EnvironmentDiff) -> list[str]:
    """The diff as people read it: a sentence, then per stage its changes with their diffs."""
    count = sum(len(stage.changes) for stage in found.stages)
    at = f"{found.environment} at {found.revision[:12]}"
    if found.failed:
        head = f"{at}: could not be planned in full"
    elif count:
        head = f"{at}: a sync would make {count} change{'s' if count != 1 else ''}"
    else:
        head = f"{at}: in sync, a sync would change nothing"
    return [head, *(line for stage in found.stages for line in _stage_lines(stage))]


def _stage_lines(stage: StageDiff) -> list[str]:
    if stage.error:
        return [f"{stage.stage}: error: {first_line(stage.error.removeprefix(stage.stage + ': '), 200)}"]
    if stage.deferred:
        return [f"{stage.stage}: planned after infrastructure applies"]
    if not stage.changes:
        return [f"{stage.stage}: no changes"]
    lines = [f"{stage.stage}: {stage.summary}"]
    for change in stage.changes:
        lines.append(f"  {change['action']:<8} {change['address']}")
        lines.extend(f"      {line}" for line in str(change.get("diff") or "").splitlines())
    return lines


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
