"""The sealed runner: every process that runs code from a config repo runs sealed.

Terraform (providers, `file()`, `external`, provisioners), Ansible (`delegate_to: localhost`,
lookups, plugins shipped in the repo), kustomize and Jinja templates are code that whoever can
push a commit or open a pull request writes. A worker runs them for syncs and previews alike, so
each such subprocess is wrapped:

* **its own mount namespace, built from an allow-list** (bubblewrap): the system (`/usr`, `/etc`),
  the tools (the Python interpreter and virtualenv, the Terraform binary, provider mirrors) read
  only, the run's own checkout read only and its own work directories writable. The data dir (the
  store, `secret.key`, the Redis socket, other environments' workspaces), the service user's home
  and the settings file do not exist in it, even where a tool's directory contains them;
* **an unprivileged OS user** (`tidegate-runner`, created by `scripts/setup.sh`) with no
  capabilities, no supplementary groups and `no_new_privs`; its own PID, IPC and UTS namespaces,
  so it cannot see or signal the worker; killed when the worker dies;
* **rlimits** (address space, CPU time, file size, processes, open files) and, for rendering,
  **no network** at all (a new network namespace with nothing in it);
* the caller's **clean environment** only: the runners build it from an allow-list plus the
  credentials that stage needs, never the worker's own.

`connection.type: local` configures the controller itself, so its playbook runs as the service
user with the host filesystem it sees (`identity=SERVICE`), but still in a mount namespace where the
hidden paths do not exist, and with the capabilities that could undo that dropped.

The seal fails closed: when the worker cannot build it (no bubblewrap, not allowed to switch user,
no runner user), `command` raises `SealUnavailable` with the reason, and `status()` says why so that
`tidegate status`, `/healthz` and the worker log can tell. Only the local CLI's `validate` and
`render` of the user's own checkout may run unsealed, and say so (`Seal.trusting_caller`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from providers.stage import StageFailed

log = logging.getLogger(__name__)

RUNNER_USER = "tidegate-runner"
GIB = 1024**3
MIB = 1024**2

#: What a root process keeps in SERVICE mode (Docker's default set, without CAP_MKNOD): enough to
#: configure the machine, not enough to undo the mount namespace (no SYS_ADMIN to unmount, no
#: DAC_READ_SEARCH for open_by_handle_at, no SYS_PTRACE to reach into the worker).
SERVICE_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
)
#: Top-level system trees every sealed process sees read only (absent ones are skipped).
SYSTEM_TREES = ("/usr", "/etc", "/opt")


class SealUnavailable(StageFailed):
    """Repository code was refused: this process cannot seal it (the message says why)."""


class Identity(StrEnum):
    RUNNER = "runner"
    """The unprivileged runner user, in a filesystem made of the allow-list only."""
    SERVICE = "service"
    """The worker's own user (`connection.type: local`), in the host filesystem minus the hidden paths."""


@dataclass(frozen=True)
class Limits:
    """rlimits of one sealed process tree; None leaves a limit as the worker has it."""

    memory: int | None = 8 * GIB
    """Address space (RLIMIT_AS). Go binaries reserve more than they use: Terraform and its AWS
    provider stay far below this; a Python renderer gets much less (RENDER_LIMITS)."""
    cpu_seconds: int | None = 4 * 3600
    file_size: int | None = 4 * GIB
    processes: int | None = 4096
    """RLIMIT_NPROC counts every process of the runner user, across concurrent runs."""
    open_files: int | None = 8192

    def prlimit_args(self) -> list[str]:
        pairs = (("--as", self.memory), ("--cpu", self.cpu_seconds), ("--fsize", self.file_size),
                 ("--nproc", self.processes), ("--nofile", self.open_files))
        return [f"{flag}={value}" for flag, value in pairs if value is not None]


RENDER_LIMITS = Limits(memory=1 * GIB, cpu_seconds=120, file_size=256 * MIB, processes=256, open_files=1024)
"""kustomize and Jinja: generous for real repos, small enough that a bomb fails fast and alone."""


@dataclass(frozen=True)
class Confinement:
    """What one sealed command may see and use, beyond the system and the tools."""

    cwd: Path
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = True
    limits: Limits = field(default_factory=Limits)
    identity: Identity = Identity.RUNNER
    hostname: str | None = None
    """The host name inside the seal (its own UTS namespace); None keeps this machine's. Terraform
    writes `user@hostname` into the state locks it takes, so a name unique to one run lets that run
    recognise its own lock."""


@dataclass(frozen=True)
class SealStatus:
    """Whether this process can seal repository code, and how or why not."""

    sealed: bool
    reason: str
    user: str | None = None

    def describe(self) -> str:
        if self.sealed:
            return f"repository code runs sealed ({self.reason})"
        return f"repository code is REFUSED: {self.reason}"


class Seal:
    """Wraps commands that run repository code; one per process, built by the composition root."""

    def __init__(
        self,
        *,
        hidden: Iterable[Path] = (),
        tools: Iterable[Path] = (),
        user: str = RUNNER_USER,
        bwrap: str | None = None,
    ) -> None:
        self.hidden = tuple(dict.fromkeys(_absolute(path) for path in hidden))
        self.tools = tuple(dict.fromkeys(_absolute(path) for path in (*default_tools(), *tools)))
        self.user = user
        self.bwrap = bwrap or shutil.which("bwrap") or "/usr/bin/bwrap"
        self._status: SealStatus | None = None
        self._ids: tuple[int, int] | None = None
        self._passwd: Path | None = None
        self._lock = threading.Lock()

    @classmethod
    def trusting_caller(cls) -> Seal:
        """No seal: for the local CLI's `validate`/`render` of the caller's own checkout only."""
        return _Unsealed()

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> SealStatus:
        """Probe once per process: build a real seal around `id` and check who ran inside."""
        with self._lock:
            if self._status is None:
                self._status = self._probe()
                (log.info if self._status.sealed else log.error)("%s", self._status.describe())
            return self._status

    def _probe(self) -> SealStatus:
        if os.geteuid() != 0:
            return SealStatus(False, "the worker does not run as root, so it cannot switch to the runner user "
                                     f"{self.user!r} (run workers as root, or see deploy/ for the container setup)")
        if not Path(self.bwrap).is_file():
            return SealStatus(False, f"bubblewrap is not installed ({self.bwrap} missing; apt-get install bubblewrap)")
        for tool in ("prlimit", "setpriv"):
            if shutil.which(tool) is None:
                return SealStatus(False, f"{tool} (util-linux) is not installed")
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            return SealStatus(False, f"the runner user {self.user!r} does not exist (scripts/setup.sh creates it)")
        if entry.pw_uid == 0:
            return SealStatus(False, f"the runner user {self.user!r} is root")
        self._ids = (entry.pw_uid, entry.pw_gid)
        self._passwd = _passwd_with_home(entry.pw_name, "/tmp")
        argv = self._wrap(["/bin/sh", "-c", 'id -u; [ -z "$(ls -A "$1" 2>/dev/null)" ] && echo hidden', "probe",
                           str(self.hidden[0]) if self.hidden else "/nonexistent"],
                          Confinement(cwd=Path("/"), network=False, limits=RENDER_LIMITS))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return SealStatus(False, f"bubblewrap could not start: {error}")
        lines = done.stdout.split()
        if done.returncode != 0 or lines[:1] != [str(entry.pw_uid)] or "hidden" not in lines:
            detail = " ".join(done.stderr.split())[:300] or f"exit {done.returncode}, output {done.stdout!r}"
            return SealStatus(False, f"the seal did not hold in a trial run: {detail}")
        return SealStatus(True, f"bubblewrap, user {self.user} (uid {entry.pw_uid}), "
                                f"{len(self.hidden)} hidden paths", self.user)

    # -- wrapping --------------------------------------------------------------------------------

    def command(self, argv: Sequence[str], confinement: Confinement) -> list[str]:
        """`argv` wrapped in the seal; raises SealUnavailable when this process cannot seal."""
        state = self.status()
        if not state.sealed:
            raise SealUnavailable(state.describe())
        return self._wrap(argv, confinement)

    def hand_over(self, *paths: Path) -> None:
        """Give the run's own work directories to the runner user, so the sealed run can write
        them (the worker, as root, still reads them afterwards)."""
        if not self.status().sealed or self._ids is None:
            return
        uid, gid = self._ids
        for path in paths:
            for entry in _walk(path):
                try:
                    stat = entry.lstat()
                    if stat.st_uid != uid or stat.st_gid != gid:
                        os.lchown(entry, uid, gid)
                except FileNotFoundError:
                    continue

    def _wrap(self, argv: Sequence[str], confinement: Confinement) -> list[str]:
        mounts = self._service_mounts(confinement) if confinement.identity is Identity.SERVICE \
            else self._runner_mounts(confinement)
        namespaces = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
        if not confinement.network:
            namespaces.append("--unshare-net")
        if confinement.hostname is not None:
            namespaces += ["--hostname", confinement.hostname]
        command = [self.bwrap, *namespaces, *mounts, "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
                   "--", "prlimit", *confinement.limits.prlimit_args(), "--"]
        if confinement.identity is Identity.RUNNER:
            uid, gid = self._ids if self._ids is not None else (0, 0)
            command += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
                        "--inh-caps=-all", "--bounding-set=-all", "--"]
        # Change directory as the final user: the run's directories are the runner's, 0700.
        return [*command, "env", f"--chdir={confinement.cwd}", "--", *argv]

    def _runner_mounts(self, confinement: Confinement) -> list[str]:
        """A filesystem made only of the allow-list; hidden paths covered wherever they fall."""
        args = ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc",
                "--perms", "1777", "--tmpfs", "/tmp"]
        for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            top = Path("/") / name
            if top.is_symlink():
                args += ["--symlink", os.readlink(top), str(top)]
            elif top.is_dir():
                args += ["--ro-bind", str(top), str(top)]
        args += _binds("--ro-bind", [Path(tree) for tree in SYSTEM_TREES if Path(tree).is_dir()])
        if self._passwd is not None:  # `~tidegate-runner` (Ansible's remote_tmp) must be writable: /tmp
            args += ["--ro-bind", str(self._passwd), "/etc/passwd"]
        args += _binds("--ro-bind", [*self.tools, *_resolv_targets()])
        args += self._hide([*SYSTEM_TREES, *self.tools])
        args += _binds("--ro-bind", confinement.readable)
        args += _binds("--bind", confinement.writable)
        # setpriv needs these three to become the runner user; it then drops every capability.
        return ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
                *args]

    def _service_mounts(self, confinement: Confinement) -> list[str]:
        """The host as the service user sees it (writable: it configures this machine), minus the
        hidden paths; the run's own directories are bound back over them."""
        args = ["--bind", "/", "/", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc",
                "--perms", "1777", "--tmpfs", "/tmp"]
        args += self._hide(["/"])
        args += _binds("--ro-bind", self.tools)  # the interpreter may live under a hidden home
        args += self._hide(self.tools)
        args += _binds("--ro-bind", confinement.readable)
        args += _binds("--bind", confinement.writable)
        drop = ["--cap-drop", "ALL"]
        for capability in SERVICE_CAPABILITIES if os.geteuid() == 0 else ():
            drop += ["--cap-add", capability]
        return [*drop, *args]

    def _hide(self, visible: Iterable[str | Path]) -> list[str]:
        """An empty tmpfs (directories) or /dev/null (files) over every hidden path that lies
        inside something visible."""
        roots = [Path(root) for root in visible]
        args: list[str] = []
        for hidden in self.hidden:
            if not any(hidden == root or root in hidden.parents for root in roots) or not hidden.exists():
                continue
            if hidden.is_dir():
                args += ["--perms", "0755", "--tmpfs", str(hidden)]
            else:
                args += ["--ro-bind", "/dev/null", str(hidden)]
        return args


class _Unsealed(Seal):
    """Runs commands as they are: the caller's own code on the caller's own machine."""

    def __init__(self) -> None:
        super().__init__()
        self._status = SealStatus(False, "not sealed: the local CLI runs the caller's own checkout")

    def command(self, argv: Sequence[str], confinement: Confinement) -> list[str]:
        return list(argv)

    def hand_over(self, *paths: Path) -> None:
        return None


def run(command: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float,
        input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`subprocess.run` for a sealed command, whose timeout kills the whole process group: killing
    only bubblewrap's outer process can leave its PID-1 process behind when it is still setting up."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None else
                               subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from expired
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)


def default_tools() -> list[Path]:
    """What every sealed run needs to find outside the system trees: this Python (the virtualenv
    and the interpreter it points at, wherever they live) and, for editable installs, our sources."""
    found = [Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent]
    found.append(Path(__file__).resolve().parent.parent)  # the directory holding `providers/`
    terraform = shutil.which("terraform")
    if terraform:
        found.append(Path(os.path.realpath(terraform)).parent)
    return [path for path in found if path.is_dir()]


def _binds(flag: str, paths: Iterable[Path]) -> list[str]:
    """One bind per path, parents before children (a later bind shadows an earlier one). The
    directories bubblewrap makes on the way are 0700 unless told: traversable ones are made first."""
    args: list[str] = []
    for path in sorted(dict.fromkeys(_absolute(p) for p in paths), key=lambda p: len(p.parts)):
        if path.exists():
            if path.parent != Path("/"):
                args += ["--perms", "0755", "--dir", str(path.parent)]
            args += [flag, str(path), str(path)]
    return args


def _passwd_with_home(user: str, home: str) -> Path:
    """/etc/passwd as sealed runs see it: the runner user's home is their private /tmp (the real one
    is /nonexistent), so tools that expand `~tidegate-runner`, as Ansible does for a task delegated
    to localhost, find a directory they can write. Everything else is the host's file, unchanged."""
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == user:
            fields[5] = home
        lines.append(":".join(fields))
    folder = Path(tempfile.mkdtemp(prefix="tidegate-seal-"))
    folder.chmod(0o755)
    path = folder / "passwd"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def _resolv_targets() -> list[Path]:
    """/etc/resolv.conf and /etc/hosts may be symlinks into /run: bind what they point at."""
    targets = []
    for name in ("/etc/resolv.conf", "/etc/hosts"):
        real = Path(os.path.realpath(name))
        if real.exists() and not str(real).startswith("/etc/"):
            targets.append(real)
    return targets


def _absolute(path: Path | str) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def _walk(path: Path) -> Iterator[Path]:
    if not path.exists():
        return
    yield path
    if path.is_dir() and not path.is_symlink():
        for directory, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                yield Path(directory) / name


_current: Seal | None = None
_current_lock = threading.Lock()


def configure(seal: Seal) -> None:
    """Set the process's seal (the composition root does, once per process)."""
    global _current
    with _current_lock:
        _current = seal


def current() -> Seal:
    """The process's seal: the configured one, else one that hides the default data dir and home."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Seal(hidden=default_hidden())
        return _current


def default_hidden() -> list[Path]:
    """The paths no sealed process may see, as far as this process knows them without settings."""
    data = os.environ.get("TIDEGATE_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "tidegate")
    hidden = [Path(data), Path.home()]
    # The settings file and every secret file (`TIDEGATE_<NAME>_FILE`, e.g. /run/secrets/… in a container).
    hidden += [Path(value) for name, value in sorted(os.environ.items())
               if name.startswith("TIDEGATE_") and name.endswith("_FILE") and value]
    return hidden
