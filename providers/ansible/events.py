"""Per host and task results, read from ansible-runner events (never from scraped text).

* `runner_on_ok` → `res.changed` and `res.diff` (for a loop: `res.results[*].changed/diff`);
* `runner_on_failed` → the task's error for that host (unless `ignore_errors`); in a plan's check
  run, a failure marked `tidegate_depends_on_earlier_changes` (by the `tidegate_plan` strategy: it
  followed a change on that host in the same play) → `unpredictable`, not an error;
* `runner_on_unreachable` → the host's connection error;
* `runner_on_skipped` → skipped;
* `playbook_on_stats` → the recap.

`runner_on_file_diff` is not used: it fires for every task with `--diff`, changed or not.
`runner_item_on_*` are not used either: the final `runner_on_*` of a loop carries every item.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

#: The message Ansible puts in place of a no_log result.
CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"


#: What the `tidegate_plan` strategy adds to a check-mode failure that followed a change on its host
#: (the same string as MARKER in plugins/strategy/tidegate_plan.py, which runs inside Ansible).
DEPENDS_ON_EARLIER_CHANGES = "tidegate_depends_on_earlier_changes"


class TaskStatus(StrEnum):
    ok = "ok"
    changed = "changed"
    failed = "failed"
    unreachable = "unreachable"
    skipped = "skipped"
    unpredictable = "unpredictable"
    """Failed in check mode after an earlier change on its host: what it does depends on changes
    check mode did not make (the message says why it failed there); apply runs it."""


@dataclass(frozen=True)
class FileChange:
    """One file (or path) a task changes or would change; `diff` is a unified diff or a
    `field: before -> after` listing for attribute changes (mode, owner, state)."""

    path: str
    diff: str
    before: str | None = None
    after: str | None = None
    created: bool = False
    deleted: bool = False


@dataclass(frozen=True)
class TaskResult:
    host: str
    task: str
    status: TaskStatus
    action: str = ""
    location: str = ""
    message: str = ""
    files: tuple[FileChange, ...] = ()
    #: Position of the task in the run (the order tasks started), for a stable order across hosts.
    ordinal: int = 0

    @property
    def address(self) -> str:
        """`host/task`, the stage vocabulary's address of an Ansible change."""
        return f"{self.host}/{self.task}"

    @property
    def changed(self) -> bool:
        return self.status is TaskStatus.changed

    @property
    def diff(self) -> str:
        return "\n".join(change.diff for change in self.files if change.diff)


@dataclass
class RunReport:
    """Everything a run said about each host, in the order the tasks ran."""

    tasks: list[TaskResult] = field(default_factory=list)
    host_errors: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    started: bool = False

    @property
    def hosts(self) -> list[str]:
        seen: dict[str, None] = {}
        for task in self.tasks:
            seen.setdefault(task.host)
        for host in self.stats:
            seen.setdefault(host)
        return list(seen)

    def for_host(self, host: str) -> list[TaskResult]:
        return [task for task in self.tasks if task.host == host]

    def changed(self) -> list[TaskResult]:
        return [task for task in self.tasks if task.changed]

    @property
    def failed(self) -> bool:
        return bool(self.host_errors)


def parse_events(events: Iterable[Mapping[str, Any]], workdir: Path | None = None) -> RunReport:
    """Fold runner events into per host/task results; task names repeated on a host get ` #2`, ...

    `workdir` makes task locations relative (`site.yml:12` rather than an absolute path).
    """
    report = RunReport()
    seen: dict[tuple[str, str], int] = {}
    ordinals: dict[str, int] = {}
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_start":
            report.started = True
            continue
        if kind == "playbook_on_stats":
            report.stats = _stats(data)
            continue
        status = _STATUS.get(str(kind))
        if status is None:
            continue
        host = str(data.get("host", ""))
        task_key = str(data.get("task_uuid") or f"{data.get('play', '')}/{_task_name(data)}")
        ordinal = ordinals.setdefault(task_key, len(ordinals))
        res = data.get("res") or {}
        if not isinstance(res, Mapping):
            res = {}
        task = _task_name(data)
        count = seen.get((host, task), 0) + 1
        seen[(host, task)] = count
        if count > 1:
            task = f"{task} #{count}"
        location = _location(str(data.get("task_path", "")), workdir)
        if status is TaskStatus.ok and _changed(res):
            status = TaskStatus.changed
        ignored = status is TaskStatus.failed and bool(data.get("ignore_errors"))
        message = _message(res) if status in (TaskStatus.failed, TaskStatus.unreachable) else ""
        if ignored and res.get(DEPENDS_ON_EARLIER_CHANGES):
            ignored, status = False, TaskStatus.unpredictable
        result = TaskResult(
            host=host, task=task, status=TaskStatus.ok if ignored else status,
            action=str(data.get("resolved_action") or data.get("task_action") or ""),
            location=location, message=message,
            files=tuple(_file_changes(res)) if status is TaskStatus.changed else (),
            ordinal=ordinal,
        )
        report.tasks.append(result)
        if ignored or status is TaskStatus.unpredictable:
            continue
        if status is TaskStatus.unreachable:
            report.host_errors.setdefault(host, f"{host}: unreachable: {message}")
        elif status is TaskStatus.failed:
            where = f" ({location})" if location else ""
            report.host_errors.setdefault(host, f"{host}: task {task!r}{where} failed: {message}")
    # Hosts finish a task in any order: sort by task, then host, so equal runs give equal plans.
    report.tasks.sort(key=lambda result: (result.ordinal, result.host))
    return report


_STATUS = {
    "runner_on_ok": TaskStatus.ok,
    "runner_on_failed": TaskStatus.failed,
    "runner_on_unreachable": TaskStatus.unreachable,
    "runner_on_skipped": TaskStatus.skipped,
}


def _task_name(data: Mapping[str, Any]) -> str:
    name = str(data.get("task") or data.get("task_action") or "task").strip()
    role = data.get("role")
    if role and not name.startswith(f"{role} : "):
        name = f"{role} : {name}"
    return name


def _location(task_path: str, workdir: Path | None) -> str:
    if not task_path:
        return ""
    path, _, line = task_path.rpartition(":")
    if not path or not line.isdigit():
        path, line = task_path, ""
    if workdir is not None:
        with contextlib.suppress(ValueError):
            path = str(Path(path).resolve().relative_to(workdir.resolve()))
    return f"{path}:{line}" if line else path


def _changed(res: Mapping[str, Any]) -> bool:
    if res.get("changed"):
        return True
    results = res.get("results")
    return isinstance(results, list) and any(isinstance(item, Mapping) and item.get("changed") for item in results)


def _message(res: Mapping[str, Any]) -> str:
    """The one line a person needs: the module's `msg` (first paragraph), stderr, or the rc."""
    if res.get("censored"):
        return "(output hidden by no_log)"
    parts: list[str] = []
    msg = res.get("msg")
    if isinstance(msg, str) and msg.strip():
        # Ansible appends "The error appears to be in ..." paragraphs: keep the first one.
        parts.append(msg.strip().split("\n\n")[0].replace("\r", "").strip())
    elif msg:
        parts.append(str(msg))
    stderr = res.get("stderr")
    if isinstance(stderr, str) and stderr.strip():
        parts.append(stderr.strip().splitlines()[-1])
    results = res.get("results")
    if not parts and isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("failed"):
                label = item.get("_ansible_item_label", item.get("item"))
                parts.append(f"item {label!r}: {_message(item)}")
    if not parts and "rc" in res:
        parts.append(f"exit code {res['rc']}")
    return "; ".join(parts) or "failed without a message"


def _file_changes(res: Mapping[str, Any]) -> list[FileChange]:
    changes: list[FileChange] = []
    results = res.get("results")
    if isinstance(results, list):
        for item in results:
            if isinstance(item, Mapping) and item.get("changed"):
                changes.extend(_file_changes({key: value for key, value in item.items() if key != "results"}))
        return changes
    diffs = res.get("diff")
    default_path = _target_path(res)
    if isinstance(diffs, Mapping):
        diffs = [diffs]
    if isinstance(diffs, list):
        for diff in diffs:
            if isinstance(diff, Mapping):
                change = render_diff(diff, default_path)
                if change is not None:
                    changes.append(change)
    if not changes and default_path:
        changes.append(FileChange(path=default_path, diff=""))
    return changes


def render_diff(diff: Mapping[str, Any], default_path: str = "") -> FileChange | None:
    """One entry of `res.diff` as a FileChange: text diffs become unified diffs, attribute
    diffs (the file module's before/after dicts) become `field: before -> after` lines."""
    if isinstance(diff.get("prepared"), str):
        return FileChange(path=default_path, diff=diff["prepared"].rstrip("\n"))
    before, after = diff.get("before"), diff.get("after")
    if isinstance(before, Mapping) or isinstance(after, Mapping):
        before_map: Mapping[str, Any] = before if isinstance(before, Mapping) else {}
        after_map: Mapping[str, Any] = after if isinstance(after, Mapping) else {}
        path = str(after_map.get("path") or before_map.get("path") or default_path)
        changed = [
            f"{key}: {before_map.get(key, '(unset)')} -> {after_map.get(key, '(unset)')}"
            for key in sorted(set(before_map) | set(after_map))
            if key != "path" and before_map.get(key) != after_map.get(key)
        ]
        if not changed:
            return None
        return FileChange(
            path=path, diff="\n".join([f"{path}:", *("  " + line for line in changed)]),
            created=before_map.get("state") == "absent", deleted=after_map.get("state") == "absent",
        )
    if before is None and after is None:
        return None
    before_text, after_text = _text(before), _text(after)
    before_header = diff.get("before_header")
    after_header = diff.get("after_header")
    # A template's after_header is the controller's temporary copy: the target comes first.
    path = str(default_path or before_header or after_header or "")
    created = before_header is None and before_text == "" and after_text != ""
    deleted = after_header is None and after_text == "" and before_text != ""
    lines = list(difflib.unified_diff(
        before_text.splitlines(keepends=True), after_text.splitlines(keepends=True),
        fromfile=f"{path} (live)" if not created else "/dev/null",
        tofile=f"{path} (desired)" if not deleted else "/dev/null",
    ))
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return FileChange(path=path, diff=text.rstrip("\n"), before=before_text, after=after_text,
                      created=created, deleted=deleted)


def _target_path(res: Mapping[str, Any]) -> str:
    """The managed path on the host: the module's `dest`/`path`, else its invocation arguments."""
    for source in (res, (res.get("invocation") or {}).get("module_args") or {}):
        if isinstance(source, Mapping):
            for key in ("dest", "path", "name"):
                value = source.get(key)
                if isinstance(value, str) and value.startswith("/"):
                    return value
    return ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "".join(str(line) if str(line).endswith("\n") else f"{line}\n" for line in value)
    return str(value)


_STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


def _stats(data: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The recap per host, every counter present (Ansible leaves zero counters out)."""
    hosts = set(data.get("processed") or {})
    for key in _STAT_KEYS:
        hosts |= set(data.get(key) or {})
    stats: dict[str, dict[str, int]] = {}
    for host in sorted(hosts):
        stats[str(host)] = {key: int((data.get(key) or {}).get(host, 0)) for key in _STAT_KEYS}
    return stats
