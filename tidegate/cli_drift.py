"""`tidegate drift`: an environment's drift reports as people read them, and the dashboard's Accept
and Heal. Composition only: each command calls the client interface (in-process or over HTTP).

`tidegate drift ENV` keeps working as it always has: a first argument that names no subcommand is
read as `tidegate drift list ENV` (so an environment called `list`, `accept` or `heal` is listed
with `tidegate drift list NAME`).

Drift items are stored as the stage providers produce them: Kubernetes objects as
`group/kind/namespace/name` with a JSON pointer, Terraform resources with a dotted attribute path,
Ansible changes as `host/task` with a file path, and a missing side as null. The functions here turn
those into what people say (`Deployment web/web .spec.replicas`, `missing`), and whole files into a
unified diff, without changing what is stored or what `-o json` gives scripts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from typer.core import TyperGroup

from tidegate.cli_reconcile import client, clock, first_line, observed_ago, when
from tidegate.client import ClientError, DriftView

VALUE_WIDTH = 60
"""Characters of one value on an item's line; longer values are cut at a word with `…`."""
DIFF_LINES = 200
"""Lines of a file's diff shown; the rest is counted, not printed."""
WHOLE_OBJECT_FIELDS = ("", "/", "(resource)")
"""Fields that mean the item is the whole object (Kubernetes `/`, Terraform `(resource)`)."""
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class DefaultToList(TyperGroup):
    """A group whose first argument, when it names no subcommand, is the environment of `list`:
    `tidegate drift staging` is what users typed before accept and heal existed."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """`ctx` is the click Context typer vendors (no public name to annotate it with)."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


drift_app = typer.Typer(cls=DefaultToList, no_args_is_help=True,
                        help="Drift reports: `tidegate drift ENV [--all]` lists them; accept or heal one.")


class Output(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


def _fail(error: Exception) -> typer.Exit:
    """One line on stderr and exit 1: a refusal is the user's information, not a traceback."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


# --- commands --------------------------------------------------------------------------------

@drift_app.command("list")
def list_reports(
    environment: Annotated[str, typer.Argument(help="ENV or REPO/ENV")],
    show_all: Annotated[bool, typer.Option("--all", help="Also accepted, healed and resolved reports.")] = False,
    output: Annotated[Output, typer.Option("--output", "-o", help="text, or json/yaml for scripts.")]
    = Output.text,
) -> None:
    """An environment's drift reports (also `tidegate drift ENV`), then each open report's items."""
    try:
        reports = client().drift(environment, include_resolved=show_all)
    except ClientError as error:
        raise _fail(error) from None
    if output is Output.json:
        typer.echo(json.dumps([_document(r) for r in reports], indent=2))
    elif output is Output.yaml:
        typer.echo(yaml.dump([_document(r) for r in reports], Dumper=_BlockDumper, sort_keys=False,
                             allow_unicode=True), nl=False)
    else:
        typer.echo("\n".join(report_text(environment, reports, show_all=show_all)))
        seen = _observed(environment)
        if seen:
            typer.echo(seen)


def _observed(environment: str) -> str:
    """When the live world was last read and what that look could not see (a drift report only
    covers what was seen)."""
    name = environment.rsplit("/", 1)[-1]
    view = next((v for v in client().status()
                 if v.name == name and environment in (v.name, f"{v.repository}/{v.name}")), None)
    if view is None:
        return ""
    line = "last observed: never"
    if view.observed_at:
        seen = datetime.fromisoformat(view.observed_at)
        line = f"last observed: {when(seen)} UTC ({observed_ago(view.observed_at, clock())})"
    return line + (f" ({view.observation.splitlines()[0]})" if view.observation else "")


@drift_app.command("accept")
def accept(report_id: Annotated[int, typer.Argument(metavar="REPORT", help="The drift report's number.")],
           comment: Annotated[str, typer.Option(help="Why the live state is kept (audited).")] = "") -> None:
    """Keep the live state (the dashboard's Accept): the report is resolved, nothing changes."""
    try:
        client().accept_drift(report_id, comment)
    except ClientError as error:
        raise _fail(error) from None
    typer.echo(f"drift report #{report_id} accepted: the live state stays as it is")


@drift_app.command("heal")
def heal(report_id: Annotated[int, typer.Argument(metavar="REPORT", help="The drift report's number.")]) -> None:
    """Sync the drifted revision again so Git takes over (the dashboard's Heal)."""
    try:
        sync_id = client().heal_drift(report_id)
    except ClientError as error:
        raise _fail(error) from None
    typer.echo(f"drift report #{report_id}: healing with sync #{sync_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")


# --- what people read ------------------------------------------------------------------------

HEADER = ("REPORT", "DETECTED", "REVISION", "STATUS", "ITEMS")

def report_text(environment: str, reports: list[DriftView], *, show_all: bool = False) -> list[str]:
    """The table of reports, then the items of each report still open."""
    if not reports:
        return [f"{environment}: no drift reports" if show_all else f"{environment}: no open drift"]
    rows = [(f"#{r.id}", r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.revision[:12], state_text(r),
             str(len(r.items))) for r in reports]
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in [HEADER, *rows]]
    for report in reports:
        if report.status == "open":
            lines += ["", *items_text(report)]
    return lines


def state(report: DriftView) -> str:
    """One word for where a report stands: open, healing, accepted, healed or resolved."""
    if report.status == "open":
        return "healing" if report.resolution == "healed" else "open"
    return report.resolution if report.resolution in ("accepted", "healed") else "resolved"


def state_text(report: DriftView) -> str:
    """`open`, `accepted by X`, `healing (sync #N)`, `healed` or `resolved`."""
    word = state(report)
    if word == "accepted" and report.accepted_by:
        return f"accepted by {report.accepted_by}"
    if word == "healing" and report.heal_sync_id is not None:
        return f"healing (sync #{report.heal_sync_id})"
    return word


def items_text(report: DriftView) -> list[str]:
    """A report's items under a heading per stage (items come in stage order)."""
    count = len(report.items)
    lines = [f"drift report #{report.id} at {report.revision[:12]}: {state_text(report)}, "
             f"{count} item{'s' if count != 1 else ''}"]
    stage = None
    for item in report.items:
        if item["stage"] != stage:
            stage = item["stage"]
            lines.append(f"  {stage}")
        lines += ["    " + line for line in item_lines(item)]
    return lines


def item_lines(item: dict[str, Any]) -> list[str]:
    """`WHERE: desired X, live Y`; a unified diff desired→live when either side is a whole text."""
    where, desired, live = address_text(item), item["desired"], item["live"]
    if _multiline(desired) or _multiline(live):
        return [f"{where}:", *["  " + line for line in diff_lines(desired, live)]]
    if desired is None and live is None:
        return [f"{where}: would change (the check gave no values)"]
    whole = is_whole(item)
    wanted, found = value_text(desired, whole=whole, live=False), value_text(live, whole=whole, live=True)
    unseen = " (they differ only in whitespace)" if wanted == found else ""
    return [f"{where}: desired {wanted}, live {found}{unseen}"]


def address_text(item: dict[str, Any]) -> str:
    """Where the drift is, as people say it; the stored address when it has an unexpected shape."""
    address, field = str(item["address"]), str(item.get("field") or "")
    if item["stage"] == "workloads":
        return _kubernetes_address(address, field)
    if item["stage"] == "infrastructure":
        return address if field in WHOLE_OBJECT_FIELDS else f"{address} .{field}"
    return f"{address} {field}" if field else address


def _kubernetes_address(address: str, pointer: str) -> str:
    """`apps/Deployment/web/web` + `/spec/replicas` → `Deployment web/web .spec.replicas`."""
    parts = address.split("/", 3)
    if len(parts) != 4:
        return f"{address} {pointer}".strip()
    _group, kind, namespace, name = parts
    shown = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    return shown if pointer in WHOLE_OBJECT_FIELDS else f"{shown} {pointer_text(pointer)}"


def pointer_text(pointer: str) -> str:
    """A JSON pointer as a path: `/spec/containers/0/image` → `.spec.containers[0].image`, a key
    that is not a plain name (an annotation) as `["example.com/owner"]`."""
    path = ""
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            path += f"[{token}]"
        elif _PLAIN_KEY.match(token):
            path += f".{token}"
        else:
            path += f"[{json.dumps(token)}]"
    return path


def is_whole(item: dict[str, Any]) -> bool:
    """The item is a whole object or file (so a missing side means it does not exist), not a field."""
    return item["stage"] == "configuration" or str(item.get("field") or "") in WHOLE_OBJECT_FIELDS


def value_text(value: Any, *, whole: bool, live: bool) -> str:
    """A value in words: `missing`/`absent` for a whole thing that does not exist, `not set` for a
    field; strings bare unless they would read as another type; the rest as compact JSON; cut to
    VALUE_WIDTH at a word."""
    if value is None:
        return ("missing" if live else "absent") if whole else "not set"
    if isinstance(value, str):
        if whole and value in ("present", "absent"):
            return value
        line = value.strip("\n")  # a one-line file's final newline is not part of what people read
        text = json.dumps(line, ensure_ascii=False) if _ambiguous(line) else line
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return first_line(text, VALUE_WIDTH)


def _ambiguous(text: str) -> bool:
    """A string that bare would read as a number, boolean, null or nothing (`"3"` is not `3`)."""
    if text != text.strip() or text in ("", "true", "false", "null", "present", "absent", "missing"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _multiline(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value.strip("\n")


def diff_lines(desired: Any, live: Any) -> list[str]:
    """A unified diff from the desired text to the live one (a side that does not exist is empty)."""
    before = [] if desired is None else str(desired).splitlines()
    after = [] if live is None else str(live).splitlines()
    lines = list(difflib.unified_diff(before, after, "desired" if desired is not None else "desired (absent)",
                                      "live" if live is not None else "live (missing)", lineterm=""))
    if not lines:
        return ["(the texts differ only in line endings or a final newline)"]
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"… {len(lines) - DIFF_LINES} more lines"]
    return lines


def _document(report: DriftView) -> dict[str, Any]:
    """A report for `-o json|yaml`: every field of the view (times in ISO 8601) and its state word."""
    data = dataclasses.asdict(report)
    data["created_at"] = report.created_at.isoformat()
    data["resolved_at"] = report.resolved_at.isoformat() if report.resolved_at else None
    return {"state": state(report), **data}


class _BlockDumper(yaml.SafeDumper):
    """YAML with whole files as `|` blocks, readable as the file itself, not as folded quoted lines."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _represent_text)
