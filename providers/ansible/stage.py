"""The configuration stage: Ansible over the nodes Terraform created.

* `plan(context)`: `--syntax-check` (a syntax error is reported with file:line before any host is
  touched), then a `--check --diff` run → one Change per `host/task` with its diff.
* `apply(context, plan)`: refuses a plan whose inputs changed since; otherwise the real run → one
  Outcome per `host/task`.
* `observe(context)`: `--syntax-check`, then a check run → one DriftItem per changed host/task/file.

Tasks that check mode cannot predict. Check mode changes nothing, so on a node configured for the
first time a task that needs what an earlier task would make fails there: `lineinfile` on the file
a `copy` would write ("Destination ... does not exist"), starting the service of a package the play
installs. A plan's check run therefore runs with the `tidegate_plan` strategy
(plugins/strategy/tidegate_plan.py): a task that fails on a host where an earlier task of the same
play reported a change is kept going past, and planned as an `update` whose diff reads

    cannot be predicted in check mode — depends on earlier changes
    (in check mode: <why it failed there>)

(the words the PR comment and the dashboard's plan page show for that `host/task`); apply runs it
as any other task. A failure on a host with no earlier change in its play still fails the plan, and
so does every failure of a drift check (`observe`): a configured node has nothing left to make.
Handlers notified only by such a task are not run by the check (apply runs them); a play that names
its own strategy, or a repo's `ansible.cfg` that names one other than `linear`, keeps it, and there
such a failure fails the plan as before.

What the context must carry (plain values; the composition root fills them):

* `spec`: a `ConfigurationInputs`, resolved once by the reconciler: the environment's
  `configuration` section as the typed model (`playbook`, `inventory_from`, `extra_vars`, its
  `connection` already layered over the repo's default, `timeout`) and `nodes`, the value of the
  Terraform output, file or stored secret `inventory_from` names (a list of `{name, address, groups,
  vars?}`, checked here);
* `workdir`: the rendered checkout; `playbook` is relative to it;
* `credentials["ssh_private_key"]`: the private key text (written to a 0600 file for the run
  only, then deleted);
* `credentials["extra_var:<name>"]`: the value of an extra var the repo gives as `{secretRef: NAME}`,
  or one the targets add (`ansible_become_password` from `connection.becomePasswordRef`): written
  to a 0600 file for the run only, masked in every output like any credential; plans keep the reference;
* `settings` (optional): `connection` (layered over the spec's: user, port, hostOverrides ...),
  `host_vars` (`{node: {var: value}}`, e.g. a sandbox node's `node_prefix`), `known_hosts` (text;
  makes host key checking strict against exactly these keys), `host_key_checking` (bool),
  `forks`, `timeout` (seconds, overrides the spec), `syntax_check` (bool, default true),
  `writable_paths` (host paths a `local` run may write inside the seal's hidden paths: the
  sandbox's local nodes live in the data dir), `untrusted_head` (bool: a preview of a head whose
  author is not trusted; a `local` connection, which runs as the service user rather than sealed
  as the runner user, is then refused).

Every `ansible-playbook` runs sealed (providers/sealed.py): as the runner user, seeing the checkout
read only and the run's private data dir; a `local` connection as the service user, still in a
mount namespace without the data dir.

What apply checks against the plan (the choice, and why):

* The plan's *inputs* must be the current ones, as Terraform refuses a stale saved plan: the
  inputs digest covers the playbook's directory tree (roles, templates, group_vars, ...), the
  directories inside the checkout that the repo's `ansible.cfg` points at (e.g. a `roles_path`
  beside the playbook's directory), the generated inventory (hosts, groups, connection settings,
  host vars) and the extra vars. If any differs, apply raises `StalePlan` ("plan again") and
  touches no host. Paths outside the checkout (installed collections, /etc/ansible) and the
  ansible-core version are not covered.
* The *live state* is not re-checked before apply. Ansible has no cheap fingerprint of a node's
  state (nothing like Terraform's state serial), and the only faithful check is a second
  `--check` run, which costs as much as the apply itself. It is also not needed for correctness:
  the tasks are idempotent, so the real run converges every host to the state the plan was made
  for, whatever was edited in between; only *which* tasks change can differ from the plan. Apply
  reports that difference instead of refusing: `outputs["unplanned_changes"]` lists the
  `host/task` addresses the run changed although the plan showed no change for them (live state
  that drifted after the plan), and the Outcomes say what each task actually did.

One unreachable or failing host fails the stage with that host's error while the other hosts'
results are kept: apply returns a failed StageResult with every host's outcomes; plan and observe
raise `AnsibleStageError` carrying the partial plan or drift items.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.ansible.events import FileChange, RunReport, TaskResult, TaskStatus, parse_events
from providers.ansible.inventory import build_inventory, merge_connection, nodes_from_output
from providers.ansible.runner import (
    PlaybookSyntaxError,
    RunnerError,
    RunOutcome,
    RunRequest,
    RunSettings,
    config_directories,
    execute,
    parse_syntax_error,
    prepare,
    syntax_check,
)
from providers.stage import (
    MASK,
    Action,
    Change,
    DriftItem,
    LiveChange,
    Outcome,
    Stage,
    StageContext,
    StageFailed,
    StagePlan,
    StageResult,
    StalePlan,
    Watcher,
    digest,
)
from repo_schema.models import ConfigurationSpec, Connection, secret_ref

PRIVATE_KEY = "ssh_private_key"
EXTRA_VAR_CREDENTIAL = "extra_var:"
#: The first line of the diff of a task that check mode cannot predict (see the module docstring).
UNPREDICTABLE = "cannot be predicted in check mode — depends on earlier changes"
_SYNTAX_OK: dict[str, float] = {}
_SYNTAX_CACHE_SIZE = 256


class AnsibleStageError(StageFailed):
    """The stage could not complete; `host_errors` per host, `partial` what was found anyway."""

    def __init__(self, message: str, host_errors: Mapping[str, str] | None = None,
                 partial: StagePlan | list[DriftItem] | None = None, run_dir: Path | None = None) -> None:
        super().__init__(message, partial)
        self.host_errors = dict(host_errors or {})
        self.run_dir = run_dir


@dataclass(frozen=True)
class ConfigurationInputs:
    """The configuration stage's typed input: the environment's `configuration` section (its
    connection layered over the repo's default) and the nodes the infrastructure reported."""

    spec: ConfigurationSpec
    nodes: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ResolvedInputs:
    """Everything one run needs, resolved from the context; `digest` covers what apply must match."""

    playbook: Path
    workdir: Path
    inventory: dict[str, Any]
    extra_vars: dict[str, Any]
    secret_vars: dict[str, str]
    connection: Connection
    private_key: str | None
    known_hosts: str | None
    settings: RunSettings
    syntax_check: bool
    digest: str


def resolve(context: StageContext[ConfigurationInputs]) -> ResolvedInputs:
    """Read spec, inputs, credentials and settings into the inputs of a run; clear errors."""
    spec = context.spec.spec
    workdir = context.workdir.resolve()
    playbook = (workdir / spec.playbook).resolve()
    if not playbook.is_relative_to(workdir):
        raise AnsibleStageError(f"playbook {spec.playbook!r} is outside the checkout")
    if not playbook.is_file():
        raise AnsibleStageError(f"playbook {spec.playbook} does not exist in the checkout")

    source = spec.inventory_from
    nodes = nodes_from_output(list(context.spec.nodes), source.terraform_output or source.describe)
    settings = context.settings
    connection = merge_connection(spec.connection, settings.get("connection"))
    if connection.type == "local" and settings.get("untrusted_head"):
        raise AnsibleStageError("connection.type local runs the playbook as the service user on this machine: "
                                "it is not run for a pull request head whose author is not trusted")
    private_key = context.credentials.get(PRIVATE_KEY)
    if connection.private_key_ref is not None and not private_key and connection.type == "ssh":
        ref = connection.private_key_ref
        name = f"secret {ref.secret!r}" if ref.secret else f"env {ref.env!r}"
        raise AnsibleStageError(f"connection.privateKeyRef names {name}, but no private key was provided")
    inventory = build_inventory(nodes, connection, settings.get("host_vars") or {})
    extra_vars, secret_vars = extra_vars_of(spec.extra_vars, context.credentials)
    timeout = float(settings.get("timeout") or spec.timeout.total_seconds())
    run_settings = RunSettings(
        forks=int(settings.get("forks") or max(5, min(50, len(nodes)))),
        timeout=timeout,
        host_key_checking=bool(settings.get("host_key_checking", True)),
    )
    known_hosts = settings.get("known_hosts")
    config_trees = {
        str(path.relative_to(workdir)): _tree_digest(path)
        for path in config_directories(playbook.parent / "ansible.cfg")
        if path.is_relative_to(workdir) and not path.is_relative_to(playbook.parent)
    }
    inputs_digest = digest({
        "playbook": str(playbook.relative_to(workdir)),
        "tree": _tree_digest(playbook.parent),
        # Only when present, so the digests of plans of repos without such directories stay as they were.
        **({"config_trees": config_trees} if config_trees else {}),
        "inventory": inventory,
        "extra_vars": spec.extra_vars,
    })
    return ResolvedInputs(
        playbook=playbook, workdir=workdir, inventory=inventory, extra_vars=extra_vars, secret_vars=secret_vars,
        connection=connection, private_key=private_key,
        known_hosts=str(known_hosts) if known_hosts is not None else None, settings=run_settings,
        syntax_check=bool(settings.get("syntax_check", True)), digest=inputs_digest,
    )


def extra_vars_of(declared: Mapping[str, Any], credentials: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec's plain extra vars, and the values handed over for each `{secretRef: NAME}` one."""
    plain: dict[str, Any] = {}
    secret: dict[str, str] = {}
    for name, value in declared.items():
        ref = secret_ref(value)
        if ref is None:
            plain[name] = value
        elif f"{EXTRA_VAR_CREDENTIAL}{name}" in credentials:
            secret[name] = credentials[f"{EXTRA_VAR_CREDENTIAL}{name}"]
        else:
            raise AnsibleStageError(f"extraVars.{name} names the stored secret {ref!r}, but no value was provided")
    for key, value in credentials.items():  # ones the targets add themselves (the become password)
        name = key.removeprefix(EXTRA_VAR_CREDENTIAL)
        if key.startswith(EXTRA_VAR_CREDENTIAL) and name not in declared:
            secret[name] = value
    return plain, secret


def _tree_digest(root: Path) -> str:
    """sha256 over the playbook directory (paths and contents), so apply notices an edited role."""
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.parts:
            sha.update(str(path.relative_to(root)).encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()


class AnsibleStage:
    """The `configuration` stage (see the module docstring for the context it needs)."""

    name = Stage.CONFIGURATION

    def plan(self, context: StageContext[ConfigurationInputs]) -> StagePlan:
        inputs = resolve(context)
        outcome, report = self._run(context, inputs, kind="plan", check=True)
        changes = [_change(task, self._masker(context)) for task in report.tasks
                   if task.status in (TaskStatus.ok, TaskStatus.changed, TaskStatus.unpredictable)]
        plan = StagePlan(
            stage=self.name, changes=changes,
            digest=digest({"inputs": inputs.digest, "changes": [(c.address, c.action, c.diff) for c in changes]}),
            artifact=outcome.data_dir,
            live_state=digest([(c.address, c.action, c.diff) for c in changes]),
            details={
                "inputs_digest": inputs.digest,
                "playbook": str(inputs.playbook.relative_to(inputs.workdir)),
                "inventory": inputs.inventory,
                "extra_vars": dict(context.spec.spec.extra_vars),
                "hosts": _host_summary(report),
                "run_dir": str(outcome.data_dir),
                "duration": round(outcome.duration, 3),
            },
        )
        error = _run_error(outcome, report, inputs)
        if error:
            raise AnsibleStageError(f"configuration plan failed: {error}", report.host_errors, plan, outcome.data_dir)
        return plan

    def apply(self, context: StageContext[ConfigurationInputs], plan: StagePlan) -> StageResult:
        try:
            inputs = resolve(context)
        except (AnsibleStageError, ValueError) as resolve_error:
            return StageResult(stage=self.name, outcomes={}, succeeded=False, error=str(resolve_error))
        if plan.stage is not self.name or plan.details.get("inputs_digest") != inputs.digest:
            raise StalePlan("stale plan: the playbook, inventory or extra vars changed since it was computed; "
                            "plan again")
        mask = self._masker(context)
        try:
            # The plan's syntax check covered exactly these inputs (same digest): not repeated.
            outcome, report = self._run(context, inputs, kind="apply", check=False, syntax=False)
        except PlaybookSyntaxError as syntax_error:
            return StageResult(stage=self.name, outcomes={}, succeeded=False, error=mask(str(syntax_error)))
        outcomes: dict[str, Outcome] = {}
        for task in report.tasks:
            result = _outcome(task)
            if result is not None:
                outcomes[task.address] = result
        error = _run_error(outcome, report, inputs)
        return StageResult(
            stage=self.name, outcomes=outcomes,
            outputs={
                "hosts": _host_summary(report),
                "failed_tasks": {task.address: mask(task.message) for task in report.tasks
                                 if task.status in (TaskStatus.failed, TaskStatus.unreachable)},
                "unplanned_changes": _unplanned_changes(plan, report),
                "facts": _facts(outcome.events),
                "run_dir": str(outcome.data_dir),
                "duration": round(outcome.duration, 3),
            },
            log=mask(outcome.stdout()),
            succeeded=error is None,
            error=mask(error) if error else None,
        )

    def watch(self, context: StageContext[ConfigurationInputs],
              on_change: Callable[[LiveChange], None]) -> Watcher | None:
        """No live view: a node is only observed by a check run, on the drift schedule."""
        return None

    def observe(self, context: StageContext[ConfigurationInputs]) -> list[DriftItem]:
        inputs = resolve(context)
        outcome, report = self._run(context, inputs, kind="observe", check=True)
        mask = self._masker(context)
        items: list[DriftItem] = []
        for task in report.changed():
            files = task.files or (FileChange(path="", diff=""),)
            for change in files:
                items.append(DriftItem(
                    stage=self.name, address=task.address, field=change.path,
                    desired=_value(change.after, change, desired=True, mask=mask),
                    live=_value(change.before, change, desired=False, mask=mask),
                    diff=mask(change.diff),
                ))
        error = _run_error(outcome, report, inputs)
        if error:
            raise AnsibleStageError(f"configuration drift check failed: {error}", report.host_errors, items,
                                    outcome.data_dir)
        return items

    # -- internals ---------------------------------------------------------------------------

    def _run(self, context: StageContext[ConfigurationInputs], inputs: ResolvedInputs, kind: str, check: bool,
             syntax: bool = True) -> tuple[RunOutcome, RunReport]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        ident = f"{kind}-{stamp}-{secrets.token_hex(3)}"
        data_dir = context.artifacts / "ansible" / ident
        request = RunRequest(
            playbook=inputs.playbook, inventory=inputs.inventory, extra_vars=inputs.extra_vars,
            secret_vars=inputs.secret_vars, check=check,
            diff=True, private_key=inputs.private_key, known_hosts=inputs.known_hosts, settings=inputs.settings,
            workdir=inputs.workdir, service=inputs.connection.type == "local", plan_run=kind == "plan",
            writable=tuple(Path(path) for path in context.settings.get("writable_paths") or ()),
        )
        prepared = prepare(request, data_dir, ident)
        try:
            if syntax and inputs.syntax_check and inputs.digest not in _SYNTAX_OK:
                try:
                    syntax_check(prepared, inputs.workdir)
                except PlaybookSyntaxError as error:
                    raise AnsibleStageError(f"playbook syntax error: {error}", run_dir=data_dir) from error
                if len(_SYNTAX_OK) >= _SYNTAX_CACHE_SIZE:
                    _SYNTAX_OK.clear()
                _SYNTAX_OK[inputs.digest] = time.time()
            outcome = execute(prepared, _following(_event_lines(context.on_line, self._masker(context)),
                                                   _host_progress(context.on_progress, inputs.inventory)))
        finally:
            prepared.finish()
        _write_summary(data_dir, outcome)
        return outcome, parse_events(outcome.events, inputs.workdir)

    @staticmethod
    def _masker(context: StageContext[ConfigurationInputs]) -> _Masker:
        return _Masker([value for value in context.credentials.values() if len(value) >= 4])


def _event_lines(on_line: Callable[[str], None] | None, mask: _Masker) -> Callable[[dict[str, Any]], None] | None:
    """ansible-runner's event handler that passes each event's output lines on as they come (the
    same text its stdout file collects), masked: what `context.on_line` follows during a run."""
    if on_line is None:
        return None

    def handle(event: dict[str, Any]) -> None:
        for line in str(event.get("stdout") or "").splitlines():
            on_line(mask(line))

    return handle


def _following(*handlers: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None] | None:
    """One event handler calling each given one, or None when none is given."""
    present = [handler for handler in handlers if handler is not None]
    if not present:
        return None

    def handle(event: dict[str, Any]) -> None:
        for handler in present:
            handler(event)

    return handle


_HOST_RESULTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


def _host_progress(on_progress: Callable[[int, int, str], None] | None,
                   inventory: dict[str, Any]) -> Callable[[dict[str, Any]], None] | None:
    """An event handler reporting hosts done / total: the hosts that answered the task that runs
    now (a new task starts again from 0), all of them once the play recap comes. Total is the
    inventory's hosts."""
    if on_progress is None:
        return None
    total = len(inventory_hosts(inventory))
    answered: set[str] = set()

    def handle(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "playbook_on_task_start":
            answered.clear()
        elif kind in _HOST_RESULTS:
            answered.add(str((event.get("event_data") or {}).get("host", "")))
        elif kind == "playbook_on_stats":
            answered.update(inventory_hosts(inventory))
        else:
            return
        on_progress(min(len(answered), total), total, "hosts")

    return handle


def inventory_hosts(inventory: dict[str, Any]) -> set[str]:
    """Every host named in an inventory (YAML form: groups with `hosts` and `children`)."""
    hosts: set[str] = set()
    for group in inventory.values():
        if isinstance(group, dict):
            hosts.update(str(name) for name in (group.get("hosts") or {}))
            hosts |= inventory_hosts(group.get("children") or {})
    return hosts


class _Masker:
    def __init__(self, values: list[str]) -> None:
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
            for line in value.strip().splitlines():
                if len(line) >= 16 and line in text:
                    text = text.replace(line, MASK)
        return text


def _action(task: TaskResult) -> Action:
    if task.status is TaskStatus.unpredictable:
        return Action.update  # it runs at apply and may change anything it manages
    if task.status is not TaskStatus.changed:
        return Action.no_op
    if task.files and all(change.created for change in task.files):
        return Action.create
    if task.files and all(change.deleted for change in task.files):
        return Action.delete
    return Action.update


def _change(task: TaskResult, mask: _Masker) -> Change:
    unpredictable = task.status is TaskStatus.unpredictable
    diff = f"{UNPREDICTABLE}\n(in check mode: {task.message})" if unpredictable else task.diff
    return Change(stage=Stage.CONFIGURATION, address=task.address, action=_action(task), diff=mask(diff))


def _outcome(task: TaskResult) -> Outcome | None:
    if task.status is TaskStatus.skipped:
        return Outcome.skipped
    if task.status is TaskStatus.ok:
        return Outcome.unchanged
    if task.status is TaskStatus.changed:
        action = _action(task)
        return {Action.create: Outcome.created, Action.delete: Outcome.deleted}.get(action, Outcome.configured)
    return None


def _value(text: str | None, change: FileChange, desired: bool, mask: _Masker) -> Any:
    """A drift item's desired or live value: the file's text; None for a file that is (or should
    be) absent; `present`/`absent` for attribute-only changes of a path."""
    missing = change.created if not desired else change.deleted
    if text is not None:
        return None if missing else mask(text)
    if change.created or change.deleted:
        return "absent" if missing else "present"
    return None


def _unplanned_changes(plan: StagePlan, report: RunReport) -> list[str]:
    """`host/task` addresses the real run changed though the plan showed no change for them: live
    state that moved after the plan (apply converges it anyway; see the module docstring)."""
    planned = {change.address for change in plan.changes if change.action is not Action.no_op}
    return [task.address for task in report.tasks if task.changed and task.address not in planned]


def _host_summary(report: RunReport) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for host in report.hosts:
        tasks = report.for_host(host)
        error = report.host_errors.get(host)
        unreachable = any(task.status is TaskStatus.unreachable for task in tasks)
        summary[host] = {
            "status": "unreachable" if unreachable else "failed" if error else "ok",
            "ok": sum(task.status in (TaskStatus.ok, TaskStatus.changed) for task in tasks),
            "changed": sum(task.status is TaskStatus.changed for task in tasks),
            "skipped": sum(task.status is TaskStatus.skipped for task in tasks),
            "unpredictable": sum(task.status is TaskStatus.unpredictable for task in tasks),
            "error": error,
        }
    return summary


def _run_error(outcome: RunOutcome, report: RunReport, inputs: ResolvedInputs) -> str | None:
    """One message for the stage: each failing host's error; a timeout; or a run that never started."""
    if report.host_errors:
        failed = "; ".join(report.host_errors[host] for host in sorted(report.host_errors))
        ok_hosts = [host for host in report.hosts if host not in report.host_errors]
        kept = f" (results of {', '.join(ok_hosts)} recorded)" if ok_hosts else ""
        prefix = f"{len(report.host_errors)} of {len(report.hosts)} hosts failed: "
        suffix = f"; timed out after {inputs.settings.timeout:.0f} s" if outcome.timed_out else ""
        return prefix + failed + kept + suffix
    if outcome.timed_out:
        return f"ansible-playbook timed out after {inputs.settings.timeout:.0f} s"
    if outcome.status == "successful" and outcome.rc == 0:
        return None
    text = outcome.stdout()
    if not report.started:
        return str(parse_syntax_error(text, inputs.workdir))
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
    return f"ansible-playbook ended with status {outcome.status} (rc {outcome.rc}): {tail}"


_FACTS = ("ansible_hostname", "ansible_fqdn", "ansible_distribution", "ansible_distribution_version",
          "ansible_default_ipv4", "ansible_python_version")


def _facts(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A few gathered facts per host (when the playbook gathers them), recorded as stage outputs."""
    facts: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        gathered = (data.get("res") or {}).get("ansible_facts") or {}
        selected = {key: gathered[key] for key in _FACTS if key in gathered}
        if isinstance(selected.get("ansible_default_ipv4"), Mapping):
            selected["ansible_default_ipv4"] = selected["ansible_default_ipv4"].get("address")
        if selected:
            facts.setdefault(str(data.get("host")), {}).update(selected)
    return facts


def _write_summary(data_dir: Path, outcome: RunOutcome) -> None:
    summary = {"status": outcome.status, "rc": outcome.rc, "duration": round(outcome.duration, 3),
               "events": len(outcome.events)}
    path = data_dir / "tidegate-run.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    os.chmod(path, 0o600)


__all__ = ["AnsibleStage", "AnsibleStageError", "PlaybookSyntaxError", "ResolvedInputs", "RunnerError", "resolve"]
