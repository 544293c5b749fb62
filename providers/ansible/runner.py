"""Running `ansible-playbook` through ansible-runner, one private data dir per run.

Each run gets `<artifacts>/<ident>/` as ansible-runner's private data dir:

    inventory/hosts.yml      the generated inventory (no secrets: key *paths* only)
    env/extravars            the rendered extra vars
    ansible.cfg              the settings of the run (pipelining, ControlPersist, timeouts)
    artifacts/<ident>/       ansible-runner's artifacts: stdout, command, status, rc, and
                             job_events.jsonl: every event in order (see `write_events`)
    secrets/                 the private key (0600) and known_hosts; the key is deleted after the run

Secrets: the private key is written as a 0600 file only for the duration of the run and removed
afterwards; it is never an environment variable, a command-line argument or an event. The child
environment is built from an allowlist (PATH, HOME, locale) plus the settings of the run: never the
caller's whole environment, which ansible-runner would otherwise copy into `artifacts/<ident>/command`.

Speed: SSH ControlPersist and pipelining are on (measured: 5 tasks on 2 SSH nodes in about 5.5 s,
about 11.5 s without ControlPersist). The control sockets live in a short per-run directory (a unix
socket path is limited to 108 bytes) and the master connections are closed when the run ends, so
no ssh process outlives a run and no connection is shared between runs with different credentials.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ansible_runner.config.runner import RunnerConfig  # type: ignore[import-untyped]
from ansible_runner.runner import Runner  # type: ignore[import-untyped]

from providers import sealed

#: Variables of the caller's environment that a run inherits; everything else is dropped.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR")

#: Event fields kept in memory for parsing (the full events stay in the artifacts).
EventHandler = Callable[[dict[str, Any]], None]


class RunnerError(RuntimeError):
    """ansible-playbook could not be run at all (not a playbook or host failure)."""


class PlaybookSyntaxError(RunnerError):
    """The playbook does not parse; `location` is `file:line[:column]` relative to the workdir."""

    def __init__(self, message: str, location: str | None) -> None:
        self.detail = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


@dataclass(frozen=True)
class RunSettings:
    """How a run executes; the same values feed ansible.cfg, so a direct `ansible-playbook` with
    that file (the benchmark's baseline) behaves the same."""

    forks: int = 10
    timeout: float = 900.0
    connect_timeout: int = 10
    pipelining: bool = True
    control_persist: str = "60s"
    host_key_checking: bool = True
    verbosity: int = 0


@dataclass(frozen=True)
class RunRequest:
    playbook: Path
    inventory: Mapping[str, Any]
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    secret_vars: Mapping[str, str] = field(default_factory=dict)
    """Extra vars from stored secrets: written to the run's 0600 secrets directory (never to
    `env/extravars`, which stays with the run's events) and deleted when the run ends."""
    check: bool = False
    diff: bool = True
    private_key: str | None = None
    known_hosts: str | None = None
    settings: RunSettings = RunSettings()
    workdir: Path | None = None
    """The checkout the playbook comes from: all a sealed run may read of the repo (default: the
    playbook's directory)."""
    service: bool = False
    """`connection.type: local`: the playbook configures this machine, so it runs as the service
    user in the host filesystem (minus the hidden paths) rather than as the runner user."""
    writable: tuple[Path, ...] = ()
    """Host paths a `local`-connection run may write although they lie in a hidden path (the
    sandbox's local nodes live in the data dir); sealed runs see them, nothing else of it."""
    plan_run: bool = False
    """The check run of a plan: runs with the `tidegate_plan` strategy (see `write_config`), so a
    task that fails after an earlier change on its host is marked rather than failing the host."""


@dataclass
class RunOutcome:
    """What one run produced; `events` are ansible-runner's event dicts in order."""

    status: str
    rc: int | None
    events: list[dict[str, Any]]
    data_dir: Path
    duration: float

    @property
    def artifacts(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def timed_out(self) -> bool:
        return self.status == "timeout"

    def stdout(self) -> str:
        paths = list(self.artifacts.glob("*/stdout"))
        return paths[0].read_text(errors="replace") if paths else ""


def ansible_bin_dir() -> Path:
    """The directory holding `ansible-playbook`: this interpreter's, else PATH's."""
    here = Path(sys.executable).parent
    if (here / "ansible-playbook").exists():
        return here
    found = shutil.which("ansible-playbook")
    if not found:
        raise RunnerError("ansible-playbook is not installed (pip install 'ansible-core>=2.18,<2.19')")
    return Path(found).parent


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child environment: an allowlist of the caller's variables, the venv's bin first on PATH."""
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env.setdefault("HOME", str(Path.home()))
    env.setdefault("LANG", "C.UTF-8")
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PATH"] = f"{ansible_bin_dir()}:{path}"
    env.update(extra or {})
    return env


#: ansible.cfg keys whose values are paths (or ':'-separated path lists), which Ansible resolves
#: relative to the config file: when a repo's ansible.cfg is carried over, they are made absolute.
_PATH_KEYS = frozenset({
    "roles_path", "collections_path", "collections_paths", "library", "module_utils", "action_plugins",
    "become_plugins", "cache_plugins", "callback_plugins", "cliconf_plugins", "connection_plugins",
    "filter_plugins", "httpapi_plugins", "inventory_plugins", "lookup_plugins", "netconf_plugins",
    "strategy_plugins", "terminal_plugins", "test_plugins", "vars_plugins", "doc_fragment_plugins",
    "log_path", "vault_password_file", "playbook_dir",
})
#: Keys of a repo's ansible.cfg that a run never takes: the run generates them or they would
#: prompt, which nothing answers.
_IGNORED_KEYS = frozenset({
    "inventory", "hostfile", "private_key_file", "ask_pass", "ask_vault_pass", "become_ask_pass",
    "local_tmp", "control_path_dir", "control_path", "ssh_args",
})


#: The strategy of plan runs, and the directory ansible loads it from (read only in the seal: it
#: lies under the sources or the virtualenv, which every sealed run sees).
PLAN_STRATEGY = "tidegate_plan"
PLAN_STRATEGY_DIR = Path(__file__).resolve().parent / "plugins" / "strategy"
_LINEAR = frozenset({"linear", "ansible.builtin.linear"})


def write_config(path: Path, settings: RunSettings, control_dir: Path, known_hosts: Path | None,
                 local_tmp: Path, base: Path | None = None, plan_run: bool = False) -> None:
    """The ansible.cfg of a run: the repo's own `ansible.cfg` beside the playbook (`base`), with
    relative paths made absolute, under the run's settings (which always win).

    `plan_run`: the strategy is `tidegate_plan` (plugins/strategy/tidegate_plan.py: `linear`, where
    a failure that follows a change on its host is marked as depending on earlier changes), unless
    the repo's config names a strategy of its own other than `linear`, which is then kept.
    """
    config = configparser.ConfigParser(interpolation=None)
    if base is not None and base.is_file():
        repo_config = configparser.ConfigParser(interpolation=None)
        repo_config.read(base)
        for section in repo_config.sections():
            config[section] = {
                key: _absolute_paths(value, base.parent) if key in _PATH_KEYS else value
                for key, value in repo_config[section].items() if key not in _IGNORED_KEYS
            }
    defaults = config["defaults"] if config.has_section("defaults") else {}
    config["defaults"] = {
        **dict(defaults),
        "forks": str(settings.forks),
        "timeout": str(settings.connect_timeout),
        "host_key_checking": str(settings.host_key_checking),
        "retry_files_enabled": "False",
        "nocolor": "True",
        "interpreter_python": "auto_silent",
        "local_tmp": str(local_tmp),
        "deprecation_warnings": "False",
    }
    if plan_run and config["defaults"].get("strategy", "linear") in _LINEAR:
        plugins = config["defaults"].get("strategy_plugins")
        config["defaults"]["strategy_plugins"] = ":".join(filter(None, [str(PLAN_STRATEGY_DIR), plugins]))
        config["defaults"]["strategy"] = PLAN_STRATEGY
    ssh_args = ["-o ControlMaster=auto", f"-o ControlPersist={settings.control_persist}", "-o IdentitiesOnly=yes",
                "-o BatchMode=yes"]
    if known_hosts is not None:
        ssh_args += [f"-o UserKnownHostsFile={known_hosts}", "-o StrictHostKeyChecking=yes"]
    ssh = config["ssh_connection"] if config.has_section("ssh_connection") else {}
    config["ssh_connection"] = {
        **dict(ssh),
        "pipelining": str(settings.pipelining),
        "ssh_args": " ".join(ssh_args),
        "control_path_dir": str(control_dir),
        "control_path": "%(directory)s/%%C",
    }
    with path.open("w") as handle:
        config.write(handle)


def config_directories(base: Path) -> list[Path]:
    """The existing directories a repo's `ansible.cfg` points at (roles, plugins, collections):
    the files a run reads besides the playbook's own tree, so a plan's digest can cover them."""
    if not base.is_file():
        return []
    config = configparser.ConfigParser(interpolation=None)
    config.read(base)
    found: list[Path] = []
    for section in config.sections():
        for key, value in config[section].items():
            if key in _PATH_KEYS and key not in ("log_path", "vault_password_file"):
                found += [Path(part) for part in _absolute_paths(value, base.parent).split(":") if part]
    return [path for path in dict.fromkeys(found) if path.is_absolute() and path.is_dir()]


def _absolute_paths(value: str, directory: Path) -> str:
    parts = []
    for part in value.split(":"):
        part = part.strip()
        if part and not part.startswith(("/", "~", "$")):
            part = str((directory / part).resolve())
        parts.append(part)
    return ":".join(parts)


@dataclass
class PreparedRun:
    """The private data dir of one run, ready for ansible-runner or a direct ansible-playbook."""

    data_dir: Path
    ident: str
    playbook: Path
    inventory_file: Path
    extravars_file: Path
    config_file: Path
    control_dir: Path
    key_file: Path | None
    request: RunRequest
    seal: sealed.Seal = field(default_factory=sealed.current)
    secret_vars_file: Path | None = None

    def confinement(self) -> sealed.Confinement:
        """The playbook's tree (read only), the run's private data dir and SSH control sockets
        (writable), the network (SSH to the nodes)."""
        tree = self.request.workdir or self.playbook.parent
        return sealed.Confinement(
            cwd=self.playbook.parent, readable=(tree.resolve(),),
            writable=(self.data_dir, self.control_dir, *self.request.writable),
            identity=sealed.Identity.SERVICE if self.request.service else sealed.Identity.RUNNER)

    def sealed_command(self, argv: list[str]) -> list[str]:
        """`argv` inside the seal, after the run's directories were handed to whoever runs it."""
        command = self.seal.command(argv, self.confinement())
        if not self.request.service:
            self.seal.hand_over(self.data_dir, self.control_dir)
        return command

    def env(self) -> dict[str, str]:
        return clean_environment({
            "ANSIBLE_CONFIG": str(self.config_file),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": str(self.request.settings.host_key_checking),
        })

    def cmdline(self) -> list[str]:
        """Options after the inventory (ansible-runner adds `-e @env/extravars` itself)."""
        args: list[str] = []
        if self.secret_vars_file is not None:
            args += ["-e", f"@{self.secret_vars_file}"]
        if self.request.check:
            args.append("--check")
        if self.request.diff:
            args.append("--diff")
        if self.request.settings.verbosity:
            args.append("-" + "v" * self.request.settings.verbosity)
        return args

    def direct_command(self) -> list[str]:
        """The equivalent plain `ansible-playbook` command (the benchmark's baseline)."""
        return [str(ansible_bin_dir() / "ansible-playbook"), "-i", str(self.inventory_file),
                "-e", f"@{self.extravars_file}", *self.cmdline(), str(self.playbook)]

    def finish(self) -> None:
        """Close the SSH master connections and remove the key file and the control directory."""
        # All at once: each `ssh -O exit` waits for its master to go, which adds up over many hosts.
        closing = [subprocess.Popen(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "tidegate-control"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for socket_path in self.control_dir.glob("*")]
        for process in closing:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.control_dir, ignore_errors=True)
        for secret in (self.key_file, self.secret_vars_file):
            if secret is not None:
                with contextlib.suppress(FileNotFoundError):
                    secret.unlink()


def prepare(request: RunRequest, data_dir: Path, ident: str, seal: sealed.Seal | None = None) -> PreparedRun:
    """Write the private data dir of one run: inventory, extra vars, ansible.cfg, secrets."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (data_dir / "inventory").mkdir(exist_ok=True)
    (data_dir / "env").mkdir(exist_ok=True)
    secrets_dir = data_dir / "secrets"
    secrets_dir.mkdir(exist_ok=True, mode=0o700)
    os.chmod(secrets_dir, 0o700)

    key_file: Path | None = None
    if request.private_key:
        key_file = secrets_dir / "ssh_key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            text = request.private_key
            handle.write(text if text.endswith("\n") else text + "\n")
    known_hosts: Path | None = None
    if request.known_hosts is not None:
        known_hosts = secrets_dir / "known_hosts"
        known_hosts.write_text(request.known_hosts)

    inventory = json.loads(json.dumps(request.inventory))
    if key_file is not None:
        for host_vars in inventory.get("all", {}).get("hosts", {}).values():
            if host_vars is not None and host_vars.get("ansible_connection", "ssh") != "local":
                host_vars["ansible_ssh_private_key_file"] = str(key_file)
    with_controller_python(inventory)
    inventory_file = data_dir / "inventory" / "hosts.yml"
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    extravars_file = data_dir / "env" / "extravars"
    extravars_file.write_text(yaml.safe_dump(dict(request.extra_vars), sort_keys=True))
    secret_vars_file: Path | None = None
    if request.secret_vars:
        secret_vars_file = secrets_dir / "extravars.json"
        fd = os.open(secret_vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(dict(request.secret_vars), handle)

    control_dir = Path(tempfile.mkdtemp(prefix="tg-cp-"))
    local_tmp = data_dir / "tmp"
    local_tmp.mkdir(exist_ok=True)
    config_file = data_dir / "ansible.cfg"
    write_config(config_file, request.settings, control_dir, known_hosts, local_tmp,
                 base=request.playbook.resolve().parent / "ansible.cfg", plan_run=request.plan_run)
    return PreparedRun(
        data_dir=data_dir, ident=ident, playbook=request.playbook.resolve(), inventory_file=inventory_file,
        extravars_file=extravars_file, config_file=config_file, control_dir=control_dir, key_file=key_file,
        request=request, seal=seal or sealed.current(), secret_vars_file=secret_vars_file,
    )


#: The inventory group that gives `local` hosts the controller's interpreter (see with_controller_python).
LOCAL_GROUP = "tidegate_local"


def with_controller_python(inventory: dict[str, Any]) -> None:
    """Hosts reached with `ansible_connection: local` run modules with this interpreter
    (`sys.executable`), not one Ansible's discovery picks from PATH (it once found a `python3.13`
    shim that could not run: "MODULE FAILURE: No start of json char found").

    Set as a variable of the inventory group `tidegate_local` (inventory group vars rank below
    every `group_vars`/`host_vars` file and every host var), so that a host's own
    `ansible_python_interpreter` (from the Terraform output) and the repo's files still win.
    Added when the run starts rather than when the inventory is built: the interpreter's path is
    this worker's, and a plan's digest must not change with the worker that computes it.
    """
    hosts = inventory.get("all", {}).get("hosts") or {}
    local = {name: None for name, host_vars in hosts.items()
             if (host_vars or {}).get("ansible_connection") == "local"
             and "ansible_python_interpreter" not in (host_vars or {})}
    if local:
        children = inventory["all"].setdefault("children", {})
        children[LOCAL_GROUP] = {"hosts": local, "vars": {"ansible_python_interpreter": sys.executable}}


def run_playbook(request: RunRequest, data_dir: Path, ident: str = "run",
                 on_event: EventHandler | None = None) -> RunOutcome:
    """Run the playbook through ansible-runner; returns when it ends or its timeout expires."""
    prepared = prepare(request, data_dir, ident)
    try:
        return execute(prepared, on_event)
    finally:
        prepared.finish()


def execute(prepared: PreparedRun, on_event: EventHandler | None = None) -> RunOutcome:
    """One ansible-runner run of a prepared data dir; the events are kept in memory and written to
    `artifacts/<ident>/job_events.jsonl` once the run ends (see `write_events`)."""
    events: list[dict[str, Any]] = []

    def handle(event: dict[str, Any]) -> bool:
        events.append(event)
        if on_event is not None:
            on_event(event)
        return False

    config = RunnerConfig(
        private_data_dir=str(prepared.data_dir),
        playbook=str(prepared.playbook),
        inventory=str(prepared.inventory_file),
        ident=prepared.ident,
        cmdline=" ".join(_quote(arg) for arg in prepared.cmdline()),
        timeout=max(1, int(prepared.request.settings.timeout)),
        quiet=True,
        rotate_artifacts=0,
        suppress_env_files=True,
        host_cwd=str(prepared.playbook.parent),
        # Not ansible-runner's default jsonfile fact cache in the artifacts: each run has its own
        # data dir, so it could never be reused, and facts we record come from the events. Ansible's
        # in-memory cache keeps the run exactly what the same ansible.cfg does without the wrapper.
        fact_cache_type="memory",
    )
    config.prepare()
    # ansible-runner seeds the child environment with the caller's whole os.environ (and writes it
    # into artifacts/<ident>/command): keep only its own settings and our allowlist.
    inherited = set(os.environ)
    own = {key: value for key, value in config.env.items()
           if key not in inherited or value != os.environ.get(key)}
    config.env = {**own, **prepared.env()}
    # The callback plugin writes its partial event files there from inside the seal.
    (Path(config.artifact_dir) / "job_events").mkdir(parents=True, exist_ok=True, mode=0o700)
    config.command = prepared.sealed_command(list(config.command))
    runner = Runner(config, event_handler=handle, cancel_callback=lambda: False)
    started = time.monotonic()
    try:
        runner.run()
    finally:
        write_events(Path(config.artifact_dir), events)
    return RunOutcome(status=str(runner.status), rc=runner.rc, events=events, data_dir=prepared.data_dir,
                      duration=time.monotonic() - started)


def write_events(directory: Path, events: list[dict[str, Any]]) -> None:
    """The run's events, in order, one JSON object a line, in `artifacts/<ident>/job_events.jsonl` (0600).

    Why not ansible-runner's own `job_events/<counter>-<uuid>.json`: it writes each event with
    `json.dump` into a codecs writer, which takes the pure-Python encoder and one `write` per token,
    and creates one file per event. Measured on the example's apply on 2 nodes (68 events): its
    event handling took 31 of the wrapper process's 64 ms of CPU per run, 10 ms without that
    writing; one file written with the C encoder costs under 1 ms (68 files: about 8 ms). The
    handler tells ansible-runner not to write them; the empty `job_events/` is removed.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / "job_events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(event) + "\n" for event in events))
    with contextlib.suppress(OSError):
        (directory / "job_events").rmdir()  # empty: the callback's partial files were consumed


_ERROR_LOCATION = re.compile(r"The error appears to be in '(?P<file>[^']+)': line (?P<line>\d+), column (?P<col>\d+)")
_ERROR_LINE = re.compile(r"^(?:\[ERROR\]|ERROR!)\s*(?P<message>.+)$", re.MULTILINE)


def parse_syntax_error(output: str, workdir: Path | None = None) -> PlaybookSyntaxError:
    """`ERROR! message ... The error appears to be in 'file': line N, column M` → file:line:col."""
    match = _ERROR_LINE.search(output)
    message = match.group("message").strip() if match else (output.strip().splitlines() or ["syntax error"])[-1]
    location_match = _ERROR_LOCATION.search(output)
    location = None
    if location_match:
        path = Path(location_match.group("file"))
        if workdir is not None:
            with contextlib.suppress(ValueError):
                path = path.resolve().relative_to(workdir.resolve())
        location = f"{path}:{location_match.group('line')}:{location_match.group('col')}"
    return PlaybookSyntaxError(message, location)


def syntax_check(prepared: PreparedRun, workdir: Path | None = None) -> float:
    """`ansible-playbook --syntax-check` with the run's inventory, extra vars and settings.

    Contacts no host. Raises PlaybookSyntaxError with file:line; returns the seconds it took.
    """
    started = time.monotonic()
    command = prepared.sealed_command(
        [str(ansible_bin_dir() / "ansible-playbook"), "--syntax-check", "-i", str(prepared.inventory_file),
         "-e", f"@{prepared.extravars_file}",
         *(["-e", f"@{prepared.secret_vars_file}"] if prepared.secret_vars_file else []), str(prepared.playbook)])
    try:
        result = subprocess.run(command, env=prepared.env(), capture_output=True, text=True,
                                cwd=prepared.playbook.parent, timeout=max(30.0, prepared.request.settings.timeout))
    except subprocess.TimeoutExpired as exc:
        raise RunnerError(f"ansible-playbook --syntax-check did not finish within {exc.timeout:.0f} s") from exc
    if result.returncode != 0:
        raise parse_syntax_error(result.stderr + "\n" + result.stdout, workdir)
    return time.monotonic() - started


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
