"""The infrastructure stage: plan, apply and observe one environment's Terraform stack.

* `plan` saves a plan file and reads it back with `show -json`; the StagePlan records the state
  (lineage/serial) it was computed against, read from the plan file itself.
* `apply` applies only that saved file, after checking that the state has not moved since; a
  stale plan, or a state lock held by someone else, is refused with a clear error.
* A state lock that a run's own terraform command took and left behind (it could not release it,
  or the AWS SDK retried the conditional write that took it, so that terraform waited on its own
  lock) is released by that run, by its ID, at once: it blocks everyone and nobody holds it.
* A state lock whose `Who` names a worker the context says is dead (a worker killed mid-apply) is
  broken by its ID and the command runs again; any other holder's lock is respected
  (providers/terraform/holders.py). The lock timeout is waited in short probes (`lock_probe`
  seconds each), judging the holder after every one: a dead worker's lock is broken as soon as
  its heartbeat is gone, not after the whole timeout (five minutes by default).
* `observe` / `check_drift` run `plan -detailed-exitcode`: exit 2 means live differs from the
  configuration; the differences are read per address and attribute, and the correcting plan is
  kept so that it can be approved and applied as is.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from providers import sealed
from providers import stage as contract
from providers.stage import (
    Action,
    DriftItem,
    LiveChange,
    Outcome,
    Stage,
    StageContext,
    StagePlan,
    StageProvider,
    StageResult,
    Watcher,
)
from providers.terraform import mirror
from providers.terraform.holders import Holder, judge, run_hostname
from providers.terraform.plans import ParsedPlan, StateVersion, drift_items, parse_plan
from providers.terraform.runner import (
    LineCallback,
    Masker,
    Runner,
    RunResult,
    TerraformError,
    clean_environment,
)
from providers.terraform.spec import TerraformBackend, TerraformSpec
from providers.terraform.workspace import Workspace

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_OUTCOME = {
    Action.create: Outcome.created,
    Action.update: Outcome.configured,
    Action.replace: Outcome.configured,
    Action.delete: Outcome.deleted,
    Action.no_op: Outcome.unchanged,
}
_LOCK_FIELD = re.compile(r"^\s*(ID|Path|Operation|Who|Version|Created|Info):[ \t]*(.*)$", re.MULTILINE)
_DEFAULT_LOCK_TIMEOUT = 300.0
_DEFAULT_LOCK_PROBE = 10.0
"""Seconds each terraform command waits for a held state lock before the holder is judged again."""
_LOCK_WAIT = "-lock-timeout="
_RELEASE_REASON = re.compile(r"Error message:\s*(.*?)(?:\n\s*Lock Info:|\n\s*\n|$)", re.DOTALL)
_UNREACHABLE = re.compile(
    r"connection refused|dial tcp|no such host|i/o timeout|connection reset|send request failed|"
    r"network is unreachable|exceeded maximum number of attempts",
    re.IGNORECASE,
)
_BACKEND_WORDS = re.compile(r"backend|state|workspaces|s3|dynamodb", re.IGNORECASE)


class StalePlan(contract.StalePlan, TerraformError):
    """The saved plan was computed against a state that has changed since: plan again."""


class BackendUnreachable(contract.Transient, TerraformError):
    """The state backend did not answer, even after retries; nothing was changed."""


class StateLocked(contract.Transient, TerraformError):
    """Terraform could not take the state lock (someone else holds it), or could not release its own.

    `ours` is true when the lock is provably the one this run's own (finished) terraform command
    took: it failed to release it, or it is named after the run's own sealed host name. `holder`
    is the verdict on whoever holds it (holders.py)."""

    def __init__(self, message: str, lock: Mapping[str, str], cause: TerraformError, *, ours: bool = False,
                 acquiring: bool = True, holder: Holder = Holder.unknown):
        super().__init__(message, cause.diagnostics, cause.returncode)
        self.lock = dict(lock)
        self.ours = ours
        self.holder = Holder.own if ours else holder
        self.acquiring = acquiring
        """The command failed to take the lock, so it changed nothing (False: it ran, then could
        not release the lock)."""


@dataclass(frozen=True)
class Outputs:
    """`terraform output -json`: values, and which of them are sensitive (never log those)."""

    values: dict[str, Any]
    sensitive: frozenset[str]

    def public(self) -> dict[str, Any]:
        return {name: value for name, value in self.values.items() if name not in self.sensitive}


@dataclass
class DriftCheck:
    """What one observation found, and the saved plan that would correct it (None when in sync)."""

    items: list[DriftItem]
    correction: StagePlan | None = None
    seconds: float = 0.0


@dataclass
class _Run:
    spec: TerraformSpec
    workspace: Workspace
    runner: Runner
    lock_timeout: float
    backend: dict[str, Any] = field(default_factory=dict)
    lock_probe: float = _DEFAULT_LOCK_PROBE
    """Seconds one command waits for a held lock; the run judges the holder and tries again until
    `lock_timeout` has passed."""
    retries: int = 3
    retry_delay: float = 2.0
    lock_host: str | None = None
    """The host name this run's sealed terraform commands see (and write into the locks they take,
    as `user@host`); None when they run unsealed, under this machine's own name."""
    worker_dead: Callable[[str], bool | None] | None = None
    """The context's question whether a worker named in a lock is dead (StageContext.worker_dead)."""
    broken: list[str] = field(default_factory=list)
    """The locks of dead workers this run broke, as `ID held by Who`, for its result's log."""


def _lines_to(own: LineCallback | None, context: Callable[[str], None] | None) -> LineCallback | None:
    """The runner's line callback: the stage's own (the CLI's progress) and the context's (the sync's
    live log), either or both; the runner has already masked each line."""
    if context is None:
        return own

    def both(stream: str, text: str) -> None:
        if own is not None:
            own(stream, text)
        context(text)

    return both


class TerraformStage:
    """The Stage implementation for Terraform (see providers/stage.py for the contract)."""

    name = Stage.INFRASTRUCTURE

    def __init__(self, *, on_line: LineCallback | None = None, base_env: Mapping[str, str] | None = None,
                 grace: float = 30.0, seal: sealed.Seal | None = None) -> None:
        self.on_line = on_line
        self.base_env = base_env
        self.grace = grace
        self.seal = seal or sealed.current()

    # -- the three verbs -------------------------------------------------------------------

    def plan(self, context: StageContext[TerraformSpec], *, destroy: bool = False) -> StagePlan:
        """A saved plan (or, with destroy, a plan that deletes everything) and its changes.

        With the setting `lock: False` (pull request previews) the plan does not take the state
        lock, as Atlantis' plans do not: it only reads the state, and must never make an apply wait."""
        run = self._prepare(context)
        path = self._plan_file(context, "destroy" if destroy else "plan")
        args = ["plan", "-json", "-input=false", *_locking(context, run), f"-out={path}"]
        if destroy:
            args.append("-destroy")
        self._checked(run, args)
        plan = self._read_plan(run, path)[0]
        if run.broken:  # a dead worker's lock: its killed apply may have left resources unrecorded
            plan.details["broken_locks"] = list(run.broken)
        return plan

    def apply(self, context: StageContext[TerraformSpec], plan: StagePlan) -> StageResult:
        """Apply exactly `plan`'s saved file; raise StalePlan if the state moved since it was made,
        StateLocked if another run holds the lock."""
        if plan.artifact is None or not plan.artifact.is_file():
            raise StalePlan(f"no saved plan file to apply ({plan.artifact}); plan again")
        artifact = self._local_artifact(context, plan.artifact)
        try:
            return self._apply_file(context, plan, artifact)
        finally:
            if artifact != plan.artifact:
                artifact.unlink(missing_ok=True)  # a plan file holds unmasked values

    def _local_artifact(self, context: StageContext[TerraformSpec], artifact: Path) -> Path:
        """The saved plan, inside this run's own plans folder: the only one the sealed terraform may
        read. A plan made by a worker on another machine comes back from the store at the path it
        had there (its data dir, not ours), which terraform here cannot see."""
        folder = self._plans_dir(context)
        if artifact.parent.resolve() == folder.resolve():
            return artifact
        local = folder / artifact.name
        shutil.move(artifact, local)
        local.chmod(0o600)
        return local

    def _apply_file(self, context: StageContext[TerraformSpec], plan: StagePlan, artifact: Path) -> StageResult:
        run = self._prepare(context)
        current = self._state_version(run)
        if plan.live_state and str(current) != plan.live_state:
            raise StalePlan(f"the plan was made against state {plan.live_state} but the state is now {current}: "
                            "it changed since the plan was made; plan again")
        args = ["apply", "-json", "-input=false", "-auto-approve", f"-lock-timeout={run.lock_timeout:g}s",
                str(artifact)]
        planned = {change.address: change.action for change in plan.changes}
        try:
            self._checked(run, args, retry=False)  # an apply is never repeated blindly
        except StateLocked:
            raise
        except TerraformError as error:
            if "stale" in str(error).lower():
                raise StalePlan(str(error), error.diagnostics, error.returncode) from error
            done = _completed(error.result) if error.result else set()
            outcomes = {address: (_OUTCOME[action] if address in done else Outcome.skipped)
                        for address, action in planned.items()}
            return StageResult(Stage.INFRASTRUCTURE, outcomes, log="\n".join([*run.broken, *run.runner.transcript]),
                               succeeded=False, error=str(error))
        outcomes = {address: _OUTCOME[action] for address, action in planned.items()}
        outputs = self._outputs(run)
        return StageResult(Stage.INFRASTRUCTURE, outcomes, outputs=outputs.values,
                           sensitive_outputs=outputs.sensitive, log="\n".join([*run.broken, *run.runner.transcript]))

    def observe(self, context: StageContext[TerraformSpec]) -> list[DriftItem]:
        check = self.check_drift(context)
        if check.correction is not None and check.correction.artifact is not None:
            check.correction.artifact.unlink(missing_ok=True)  # a plan file holds unmasked values
        return check.items

    def watch(self, context: StageContext[TerraformSpec], on_change: Callable[[LiveChange], None]) -> Watcher | None:
        """No live view: cloud APIs have no watch; drift is found on the schedule (`plan`)."""
        return None

    # -- more than the protocol ------------------------------------------------------------

    def check_drift(self, context: StageContext[TerraformSpec]) -> DriftCheck:
        """`plan -detailed-exitcode`: exit 0 is in sync; exit 2 gives drift items per address and
        attribute, and the saved correcting plan."""
        started = time.monotonic()
        run = self._prepare(context)
        path = self._plan_file(context, "correction")
        result = self._checked(run, ["plan", "-json", "-input=false", "-detailed-exitcode",
                                     f"-lock-timeout={run.lock_timeout:g}s", f"-out={path}"], ok=(0, 2))
        if result.returncode == 0:
            path.unlink(missing_ok=True)
            return DriftCheck([], None, time.monotonic() - started)
        correction, parsed = self._read_plan(run, path)
        return DriftCheck(drift_items(parsed), correction, time.monotonic() - started)

    def outputs(self, context: StageContext[TerraformSpec]) -> Outputs:
        return self._outputs(self._prepare(context))

    def state_version(self, context: StageContext[TerraformSpec]) -> StateVersion:
        return self._state_version(self._prepare(context))

    # -- internals -------------------------------------------------------------------------

    def _prepare(self, context: StageContext[TerraformSpec]) -> _Run:
        spec = context.spec
        settings = context.settings
        root = Path(settings.get("terraform_workspaces") or context.artifacts / "workspaces")
        workspace = Workspace(root / context.environment)
        workspace.sync_module(context.workdir / spec.path)
        configured = settings.get("terraform_plugin_dirs") or ()
        if isinstance(configured, str):
            configured = [part for part in configured.split(":") if part]
        roots = mirror.plugin_dirs([*spec.mirror_paths, *configured], self.base_env)
        if spec.offline:
            mirror.check_available(mirror.required_sources(workspace.module), roots)
        backend_type, backend = _backend_config(spec.backend, workspace, settings.get("backend_config") or {})
        workspace.write_inputs(
            tfvars=spec.tfvars if spec.tfvars is not None else json.dumps(dict(spec.vars), sort_keys=True, indent=2)
            + "\n",
            backend_type=backend_type,
            backend_values=backend,
            cli_config=mirror.cli_config(roots, offline=spec.offline),
            aws_provider=settings.get("aws_provider"),
        )
        masker = Masker()
        masker.add(*context.credentials.values())
        env = clean_environment({**context.credentials, "TF_CLI_CONFIG_FILE": str(workspace.cli_config)},
                                self.base_env)
        binary = str(settings.get("terraform_binary") or "terraform")
        lock_host = run_hostname(context.worker) if self.seal.status().sealed else None
        runner = Runner(workspace.module, env, binary=binary, timeout=spec.timeout, grace=self.grace,
                        on_line=_lines_to(self.on_line, context.on_line), masker=masker, seal=self.seal,
                        confinement=self._confinement(context, workspace, roots, binary, lock_host))
        lock_timeout = settings.get("lock_timeout")
        if lock_timeout is None:
            lock_timeout = spec.backend.lock_timeout if spec.backend is not None else _DEFAULT_LOCK_TIMEOUT
        run = _Run(spec, workspace, runner, float(lock_timeout), backend,
                   lock_probe=float(settings.get("lock_probe", _DEFAULT_LOCK_PROBE)),
                   retries=int(settings.get("backend_retries", 3)),
                   retry_delay=float(settings.get("backend_retry_delay", 2.0)), lock_host=lock_host,
                   worker_dead=context.worker_dead)
        try:
            if self._retrying(run, lambda: workspace.init(runner)):
                log.info("terraform init done for %s", context.environment)
        except TerraformError as error:
            raise self._explain(run, error, roots) from error
        return run

    def _retrying(self, run: _Run, call: Callable[[], _T]) -> _T:
        """Run `call`, again (with backoff) while the backend is unreachable; these calls change no
        state (init, plan, show, state pull, output), so repeating them is safe."""
        attempt = 1
        while True:
            try:
                return call()
            except StateLocked:
                raise
            except TerraformError as error:
                if not _unreachable(error):
                    raise
                if attempt >= run.retries:
                    raise BackendUnreachable(
                        f"the state backend is unreachable after {attempt} attempts; nothing was changed: {error}",
                        error.diagnostics, error.returncode, error.result) from error
                delay = run.retry_delay * 2 ** (attempt - 1)
                log.warning("state backend unreachable (attempt %d of %d), retrying in %.1fs", attempt,
                            run.retries, delay)
                time.sleep(delay)
                attempt += 1

    def _explain(self, run: _Run, error: TerraformError, roots: list[Path]) -> TerraformError:
        text = str(error)
        if "provider" in text.lower() and ("mirror" in text.lower() or "query available" in text.lower()):
            where = ", ".join(str(root) for root in roots)
            return TerraformError(f"{text} (plugin mirrors searched: {where})", error.diagnostics, error.returncode)
        return self._locked(run, error) or error

    def _checked(self, run: _Run, args: list[str], ok: tuple[int, ...] = (0,), *, retry: bool = True) -> RunResult:
        """Run a command; a state lock it left behind is released. With `retry` (commands that
        change no state) the command then runs once more; an apply runs once more only when it
        never took the lock (it waited on its own: nothing was applied), never after it ran."""
        def call() -> RunResult:
            released = broke = False
            started = time.monotonic()
            while True:
                waited = time.monotonic() - started
                try:
                    return run.runner.run(_lock_wait(args, run, waited), ok=ok)
                except TerraformError as error:
                    locked = self._locked(run, error, time.monotonic() - started)
                    if locked is None:
                        raise
                    if _wait_more(run, locked, time.monotonic() - started):
                        continue  # held by a live or unknown holder: wait on, judge it again
                    if locked.holder is Holder.dead and locked.acquiring and not broke and self._break(run, locked):
                        broke = True
                        continue  # the command never took the lock, so it changed nothing: run it now
                    if locked.ours and not released and self._release(run, locked, args[0]):
                        released = True
                        if retry or locked.acquiring:
                            continue
                        raise StateLocked(f"{locked}; that lock was this run's own and is released: run again",
                                          locked.lock, error, ours=True) from error
                    raise locked from error
        return self._retrying(run, call) if retry else call()

    def _locked(self, run: _Run, error: TerraformError, waited: float | None = None) -> StateLocked | None:
        """A StateLocked for a failure to take the state lock or to release it, else None."""
        lock_errors = [d for d in error.diagnostics if "state lock" in d.summary.lower()]
        if not lock_errors:
            return None
        detail = lock_errors[0].detail
        lock = {key: value.strip() for key, value in _LOCK_FIELD.findall(detail)}
        table = run.backend.get("dynamodb_table")
        where = f"DynamoDB table {table!r}" if table else ("S3 lock file" if run.backend.get("use_lockfile")
                                                            else "the state backend")
        if "releasing" in lock_errors[0].summary.lower():
            # Terraform took this lock and could not release it. When the lock it names is the one
            # it held (not "does not match existing lock"), that lock is this command's own.
            reason = _RELEASE_REASON.search(detail)
            ours = bool(lock.get("ID")) and "does not match" not in detail
            message = (f"terraform could not release its state lock in {where}: lock {lock.get('ID', '?')} "
                       f"for {lock.get('Operation', '?')}"
                       + (f" ({' '.join(reason.group(1).split())})" if reason else ""))
            return StateLocked(message, lock, error, ours=ours, acquiring=False)
        holder = judge(lock.get("Who", ""), own_host=run.lock_host, worker_dead=run.worker_dead)
        if not lock.get("ID"):
            holder = Holder.unknown  # nothing to release or break by
        message = (f"state is locked in {where}: lock {lock.get('ID', '?')} held by {lock.get('Who', '?')} "
                   f"for {lock.get('Operation', '?')} since {lock.get('Created', '?')} "
                   f"(waited {run.lock_timeout if waited is None else waited:.0f}s; holder {holder.value})")
        return StateLocked(message, lock, error, ours=holder is Holder.own, holder=holder)

    def _release(self, run: _Run, locked: StateLocked, command: str) -> bool:
        """Release, by its ID, a lock this run's own terraform command left behind (its process has
        exited, so nobody holds it). `force-unlock ID` deletes the lock only while it is still that
        one: a lock someone else has taken since is never touched."""
        lock_id = locked.lock["ID"]
        log.warning("terraform %s left its own state lock %s behind (%s); releasing it", command, lock_id, locked)
        try:
            self._retrying(run, lambda: run.runner.run(["force-unlock", "-force", lock_id]))
        except TerraformError as error:
            log.error("could not release this run's own state lock %s: %s", lock_id, error)
            return False
        return True

    def _break(self, run: _Run, locked: StateLocked) -> bool:
        """Break, by its ID, the lock of a worker known dead (its terraform died with it). The
        apply it was running may have created resources it never wrote to state: Terraform cannot
        know them, and the run's log says so."""
        lock_id, who = locked.lock["ID"], locked.lock.get("Who", "?")
        operation = locked.lock.get("Operation", "?")
        note = (f"broke state lock {lock_id} held by {who} (its worker is dead) for {operation}; "
                "an apply killed while holding it may have created resources it did not record in state")
        log.warning("%s", note)
        try:
            self._retrying(run, lambda: run.runner.run(["force-unlock", "-force", lock_id]))
        except TerraformError as error:
            log.error("could not break the dead worker's state lock %s: %s", lock_id, error)
            return False
        run.broken.append(note)
        return True

    @staticmethod
    def _confinement(context: StageContext[TerraformSpec], workspace: Workspace, roots: list[Path],
                     binary: str, hostname: str | None = None) -> sealed.Confinement:
        """Terraform sees its workspace and plan files (writable), the provider mirrors and its
        binary (read only), and the network (providers talk to their APIs): not the checkout,
        whose module it runs from the workspace's copy, and nothing of the worker's. Its host name
        is the run's own (`run_hostname`), so that the locks it takes name this run."""
        found = shutil.which(binary)
        tools = [Path(os.path.realpath(found)).parent] if found else []
        return sealed.Confinement(cwd=workspace.module, readable=(*roots, *tools),
                                  writable=(workspace.root, TerraformStage._plans_dir(context)), hostname=hostname)

    @staticmethod
    def _plans_dir(context: StageContext[TerraformSpec]) -> Path:
        folder = context.artifacts / "terraform"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def _plan_file(self, context: StageContext[TerraformSpec], kind: str) -> Path:
        folder = self._plans_dir(context)
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"{time.time() % 1:.6f}"[1:]
        return folder / f"{context.environment}-{kind}-{stamp}.tfplan"

    def _read_plan(self, run: _Run, path: Path) -> tuple[StagePlan, ParsedPlan]:
        path.chmod(0o600)  # a plan file holds unmasked values and the prior state
        shown = run.runner.run(["show", "-json", "-no-color", str(path)], stream=False).json()
        parsed = parse_plan(shown)
        state = StateVersion.of_plan_file(path)
        plan = StagePlan(
            stage=Stage.INFRASTRUCTURE,
            changes=parsed.changes,
            digest=parsed.raw_digest,
            artifact=path,
            live_state=str(state),
            details={
                "resources": [resource.as_dict() for resource in parsed.resources],
                "outputs": parsed.outputs,
                "terraform_version": parsed.terraform_version,
            },
        )
        return plan, parsed

    def _state_version(self, run: _Run) -> StateVersion:
        result = self._retrying(run, lambda: run.runner.run(["state", "pull"], stream=False))
        return StateVersion.from_state_json(result.stdout)

    def _outputs(self, run: _Run) -> Outputs:
        data = self._retrying(run, lambda: run.runner.run(["output", "-json"], stream=False)).json()
        values: dict[str, Any] = {}
        sensitive: set[str] = set()
        for name, output in (data or {}).items():
            values[name] = output.get("value")
            if output.get("sensitive"):
                sensitive.add(name)
                run.runner.masker.add(*_strings(output.get("value")))
        return Outputs(values, frozenset(sensitive))


def _unreachable(error: TerraformError) -> bool:
    """The backend did not answer before anything happened. A failure to *release* the lock is not
    retried: the command ran, and a retry would only wait on the lock it left behind."""
    text = str(error)
    if "releasing the state lock" in text.lower():
        return False
    return bool(_UNREACHABLE.search(text)) and bool(_BACKEND_WORDS.search(text))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value, *value.splitlines()]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _locking(context: StageContext[TerraformSpec], run: _Run) -> list[str]:
    """`-lock=false` for a read-only plan that must not block applies, else wait for the lock."""
    if context.settings.get("lock", True) is False:
        return ["-lock=false"]
    return [f"-lock-timeout={run.lock_timeout:g}s"]


def _lock_wait(args: list[str], run: _Run, waited: float) -> list[str]:
    """`args` with its `-lock-timeout=` cut to one probe: at most `lock_probe` seconds, and no more
    than what is left of `lock_timeout` after `waited`."""
    wait = max(0.0, min(run.lock_probe, run.lock_timeout - waited))
    return [f"{_LOCK_WAIT}{wait:.1f}s" if arg.startswith(_LOCK_WAIT) else arg for arg in args]


def _wait_more(run: _Run, locked: StateLocked, waited: float) -> bool:
    """Whether a command that could not take the lock runs again, to wait one more probe: the lock
    is someone else's, alive or unknown (a dead worker's is broken, this run's own released), and
    the lock timeout has not passed."""
    if not locked.acquiring or locked.holder not in (Holder.alive, Holder.unknown):
        return False
    if waited + 0.5 >= run.lock_timeout:
        return False
    log.info("state lock %s held by %s (holder %s): waiting on, %.0fs of %gs", locked.lock.get("ID"),
             locked.lock.get("Who", "?"), locked.holder.value, waited, run.lock_timeout)
    return True


def _completed(result: RunResult) -> set[str]:
    done = set()
    for message in result.messages:
        if message.get("type") == "apply_complete":
            address = ((message.get("hook") or {}).get("resource") or {}).get("addr")
            if address:
                done.add(str(address))
    return done


def _backend_config(backend: TerraformBackend | None, workspace: Workspace,
                    overrides: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The backend type and its `-backend-config` values: the repo's, then the injected overrides."""
    if backend is None:
        return None, dict(overrides)
    values: dict[str, Any] = {}
    if backend.type == "local":
        (workspace.root / "state").mkdir(parents=True, exist_ok=True)
        values["path"] = str(workspace.root / "state" / "terraform.tfstate")
    else:
        named = {"bucket": backend.bucket, "key": backend.key, "region": backend.region,
                 "dynamodb_table": backend.dynamodb_table}
        values.update({name: value for name, value in named.items() if value})
        if backend.use_lockfile:
            values["use_lockfile"] = True
        values["encrypt"] = backend.encrypt
    values.update(overrides)
    return backend.type, values


if TYPE_CHECKING:  # TerraformStage satisfies the shared stage protocol
    _conforms: StageProvider = TerraformStage()
