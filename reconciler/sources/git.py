"""A registered config repo as seen through git: its branch head, its commits, immutable checkouts.

One bare mirror per registered repository lives in a cache directory chosen by the caller and is
shared by all of the repository's environments. Polling is cheap: `remote_head()` is one
`git ls-remote` (milliseconds) and only a moved head costs a `fetch()`. Rendering never reads a
moving branch: `checkout(sha, root)` materialises exactly one commit, read-only, once.

Git runs as a subprocess with a clean environment (never the caller's whole environment), so a
stray `GIT_DIR`, credential or proxy setting of the worker cannot change what is fetched. Secrets
travel in environment variables of that subprocess only (an `http.extraHeader` via
`GIT_CONFIG_COUNT`, or an SSH key file that exists for the duration of the call), never in a URL,
in argv or in an error message.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

LS_REMOTE_TIMEOUT = 60.0
FETCH_TIMEOUT = 900.0
LOCAL_TIMEOUT = 300.0
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"

_REVISION = re.compile(r"^[0-9a-f]{4,64}$")
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<![./])$")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_AUTH_FAILURES = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
    "permission denied (publickey",
    "host key verification failed",
)


class SourceError(Exception):
    """Something about a repository that the reconciler reports on the repository, not a crash."""


class SourceUnreachable(SourceError):
    """The remote could not be reached or refused us; the next poll may succeed."""


class AuthenticationFailed(SourceUnreachable):
    """The remote answered but did not accept (or was not given) the credentials."""


class BranchMissing(SourceError):
    """The tracked branch does not exist on the remote (deleted or never pushed)."""


class UnknownRevision(SourceError):
    """A SHA that is not a commit of the mirror (not fetched yet, or never existed)."""


@dataclass(frozen=True, repr=False)
class GitAuth:
    """Credentials for one repository: an HTTPS token or an SSH private key (and known hosts)."""

    token: str | None = None
    username: str = "x-access-token"
    ssh_private_key: str | None = None
    known_hosts: str | None = None

    def __repr__(self) -> str:
        def shown(value: str | None) -> str:
            return "None" if value is None else "'***'"

        return (f"GitAuth(token={shown(self.token)}, username={self.username!r}, "
                f"ssh_private_key={shown(self.ssh_private_key)}, known_hosts={shown(self.known_hosts)})")

    def authorization(self) -> str | None:
        """The HTTP Authorization header value (Basic, as GitHub, GitLab and Gitea accept tokens)."""
        if self.token is None:
            return None
        pair = base64.b64encode(f"{self.username}:{self.token}".encode()).decode("ascii")
        return f"Basic {pair}"

    def secrets(self) -> list[str]:
        """Strings that must never appear in a message."""
        header = self.authorization()
        found = [self.token] if self.token else []
        return found + ([header, header.split(" ", 1)[1]] if header else [])


@dataclass(frozen=True)
class CommitInfo:
    """What a Revision shows about its commit."""

    sha: str
    author: str  # "Name <email>"
    summary: str  # the message's first line
    message: str  # the full message
    committed_at: datetime  # aware, UTC


@dataclass(frozen=True)
class Person:
    """A name and e-mail as a commit spells them (whatever the committer's git was told)."""

    name: str
    email: str


@dataclass(frozen=True)
class CommitPeople:
    """Everyone a commit names: its author, its committer, and its `Co-authored-by` trailers."""

    sha: str
    author: Person
    committer: Person
    co_authors: tuple[Person, ...] = ()

    @property
    def people(self) -> tuple[Person, ...]:
        return (self.author, self.committer, *self.co_authors)


_CO_AUTHOR = re.compile(r"^\s*co-authored-by\s*:\s*(.*?)\s*<([^<>]*)>\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str


def safe_url(url: str) -> str:
    """The URL without any user:password@ part, fit for messages and logs."""
    return _URL_USERINFO.sub("", url)


def url_credentials(url: str) -> str | None:
    """Why `url` may not be stored as given (it carries a credential), or None when it carries none.

    An HTTP(S) URL's user part is a credential whatever it looks like (GitHub and GitLab take a token
    as the user name); any URL with a password is one. `ssh://git@host/…` and `git@host:…` name only
    the SSH user, which is no secret. Stored URLs are shown by `repo list`, the API and the logs, and
    git would put them in its argv: tokens belong in the encrypted store (`--token-env`)."""
    value = url.strip()
    if "://" not in value:
        return None
    parts = urlsplit(value)
    if "@" not in parts.netloc:
        return None
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    if parts.scheme.lower() in ("http", "https") or password:
        return (f"the URL carries a credential ({parts.scheme}://{'***' if user else ''}"
                f"{':***' if password else ''}@…): give the URL without it and the token with --token-env VAR")
    return None


class GitSource:
    """One registered repository and branch, backed by a mirror clone at `cache_dir`.

    `cache_dir` is the mirror's own directory (e.g. `<data_dir>/git/<key>.git`); a lock file
    `<cache_dir>.lock` beside it serialises fetches of all processes on this machine.
    """

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        branch: str = "main",
        auth: GitAuth | None = None,
        *,
        timeout: float = LS_REMOTE_TIMEOUT,
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        if not url or url.startswith("-") or "\n" in url:
            raise ValueError(f"not a repository URL: {safe_url(url)!r}")
        if not _BRANCH.match(branch):
            raise ValueError(f"not a branch name: {branch!r}")
        self.url = url
        self.mirror = Path(cache_dir)
        self.branch = branch
        self.auth = auth
        self.timeout = timeout
        self.fetch_timeout = fetch_timeout

    def __repr__(self) -> str:
        return f"GitSource({safe_url(self.url)!r}, {str(self.mirror)!r}, branch={self.branch!r})"

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    # Remote ---------------------------------------------------------------------------------

    def remote_head(self) -> str:
        """The branch's SHA on the remote, without fetching anything."""
        result = self._run([*_ls_remote_protocol(self.url), "ls-remote", "--", self.url, self.ref],
                           timeout=self.timeout, network=True)
        if result.returncode != 0:
            raise self._remote_error("cannot reach", result)
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            sha, _, name = line.partition("\t")
            if name == self.ref:
                return sha
        raise BranchMissing(f"branch {self.branch!r} does not exist in {safe_url(self.url)}")

    def fetch(self, want: str | None = None) -> None:
        """Clone the mirror on first use, else fetch every ref; safe across processes.

        With `want`, a caller that waited for another process's fetch returns at once when that
        fetch already brought the commit.
        """
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.mirror.with_name(self.mirror.name + ".lock")):
            if want is not None and self.has_commit(want):
                return
            if self._mirror_ready():
                self._fetch()
            else:
                self._clone()

    def refresh(self) -> str:
        """The remote head, fetched into the mirror only when the mirror does not have it yet."""
        head = self.remote_head()
        if not self.has_commit(head):
            self.fetch(want=head)
        return head

    def _clone(self) -> None:
        if self.mirror.exists():  # a half-made mirror left by a killed process
            shutil.rmtree(self.mirror)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.mirror.name}.clone-", dir=self.mirror.parent))
        try:
            result = self._run(["clone", "--mirror", "--quiet", "--", self.url, str(staging)],
                               timeout=self.fetch_timeout, network=True, git_dir=False)
            if result.returncode != 0:
                raise self._remote_error("cannot clone", result)
            # The mirror keeps no credentials: every fetch names the URL itself.
            self._run_local(["remote", "set-url", "origin", safe_url(self.url)], git_dir=staging)
            os.rename(staging, self.mirror)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _fetch(self) -> None:
        args = ["-c", "gc.autoDetach=false", "fetch", "--quiet", "--prune", "--force", "--", self.url, "+refs/*:refs/*"]
        result = self._run(args, timeout=self.fetch_timeout, network=True)
        if result.returncode != 0:
            raise self._remote_error("cannot fetch from", result)

    def _mirror_ready(self) -> bool:
        return (self.mirror / "HEAD").is_file() and (self.mirror / "objects").is_dir()

    def _remote_error(self, action: str, result: _Result) -> SourceUnreachable:
        detail = self._redact(_complaint(result.stderr)) or f"git exited with {result.returncode}"
        where = safe_url(self.url)
        if any(marker in result.stderr.lower() for marker in _AUTH_FAILURES):
            given = "credentials were refused" if self.auth else "the remote needs credentials and none are set"
            return AuthenticationFailed(f"{action} {where}: {given} ({detail})")
        return SourceUnreachable(f"{action} {where}: {detail}")

    # Mirror ---------------------------------------------------------------------------------

    def has_commit(self, sha: str) -> bool:
        try:
            self.resolve(sha)
        except UnknownRevision:
            return False
        return True

    def resolve(self, sha: str) -> str:
        """The full SHA of a commit in the mirror; UnknownRevision if it is not there."""
        if not _REVISION.match(sha):
            raise UnknownRevision(f"{sha!r} is not a commit SHA")
        if not self._mirror_ready():
            raise UnknownRevision(f"commit {sha} is unknown: {safe_url(self.url)} has not been fetched yet")
        result = self._run_local(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}"],
                                 check=False)
        if result.returncode != 0:
            raise UnknownRevision(f"commit {sha} is not in the mirror of {safe_url(self.url)}")
        return result.stdout.decode().strip()

    def commit(self, sha: str) -> CommitInfo:
        full = self.resolve(sha)
        output = self._run_local(["log", "-1", "--no-show-signature", "--format=%H%x00%an <%ae>%x00%ct%x00%B",
                                  full, "--"]).stdout.decode("utf-8", "replace")
        commit_sha, author, timestamp, message = output.split("\x00", 3)
        message = message.rstrip("\n")
        return CommitInfo(sha=commit_sha, author=author, summary=message.partition("\n")[0], message=message,
                          committed_at=datetime.fromtimestamp(int(timestamp), UTC))

    def changed_paths(self, old_sha: str, new_sha: str) -> list[str]:
        """Paths that differ between two commits; a rename lists both its old and new path."""
        old, new = self.resolve(old_sha), self.resolve(new_sha)
        output = self._run_local(["diff", "--name-only", "--no-renames", "-z", old, new, "--"]).stdout
        return sorted(part.decode("utf-8", "surrogateescape") for part in output.split(b"\x00") if part)

    def commit_people(self, base: str | None, head: str) -> list[CommitPeople]:
        """Who wrote the commits in (base, head]: every commit reachable from head but not from base
        (with no base, all of head's history), newest first, merges included."""
        full = self.resolve(head)
        revisions = [full, f"^{self.resolve(base)}"] if base is not None else [full]
        output = self._run_local(["log", "--no-show-signature", "--format=%H%x00%an%x00%ae%x00%cn%x00%ce%x00%B%x1e",
                                  *revisions, "--"]).stdout.decode("utf-8", "replace")
        found = []
        for record in output.split("\x1e"):
            fields = record.strip("\n").split("\x00", 5)
            if len(fields) < 6:
                continue
            sha, author, author_email, committer, committer_email, message = fields
            co_authors = tuple(Person(name.strip(), email.strip()) for name, email in _CO_AUTHOR.findall(message))
            found.append(CommitPeople(sha, Person(author, author_email), Person(committer, committer_email),
                                      co_authors))
        return found

    def is_ancestor(self, old_sha: str, new_sha: str) -> bool:
        """False when `new` does not contain `old`: the branch was force-pushed (history rewritten)."""
        old, new = self.resolve(old_sha), self.resolve(new_sha)
        result = self._run_local(["merge-base", "--is-ancestor", old, new], check=False)
        if result.returncode not in (0, 1):
            raise SourceError(f"cannot compare {old} and {new}: {_complaint(result.stderr)}")
        return result.returncode == 0

    def checkout(self, sha: str, root: Path) -> Path:
        """`root/<full sha>`: the files of exactly that commit, read-only, made once and atomically.

        The tree is written from a private index (`read-tree` + `checkout-index`), not with
        `git archive`, so `export-ignore`/`export-subst` attributes in the repo cannot alter it.
        A second caller for the same SHA (thread or process) waits and gets the same directory.
        """
        full = self.resolve(sha)
        root.mkdir(parents=True, exist_ok=True)
        target = root / full
        if target.is_dir():
            return target
        with _locked(root / f".{full}.lock"):
            if not target.is_dir():
                self._build_checkout(full, target)
        return target

    def _build_checkout(self, full: str, target: Path) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{full}-", dir=target.parent))
        index = staging.with_name(staging.name + ".index")
        try:
            env = {"GIT_INDEX_FILE": str(index)}
            self._run_local(["read-tree", full], env=env)
            self._run_local(["--work-tree", str(staging), "checkout-index", "--all", "--force"], env=env)
            _make_read_only(staging)
            os.rename(staging, target)
        finally:
            index.unlink(missing_ok=True)
            if staging.exists():
                _remove_tree(staging)

    # Subprocesses ---------------------------------------------------------------------------

    def _run_local(
        self,
        args: Sequence[str],
        *,
        git_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> _Result:
        result = self._run(args, timeout=LOCAL_TIMEOUT, git_dir=git_dir or self.mirror, env=env)
        if check and result.returncode != 0:
            raise SourceError(f"git {_verb(args)} failed in the mirror of {safe_url(self.url)}: "
                              f"{self._redact(_complaint(result.stderr))}")
        return result

    def _run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        network: bool = False,
        git_dir: Path | bool = True,
        env: Mapping[str, str] | None = None,
    ) -> _Result:
        """Run git with a clean environment; credentials only for the calls that talk to the remote."""
        prefix = ["--git-dir", str(self.mirror if git_dir is True else git_dir)] if git_dir else []
        with git_environment(self.auth if network else None) as base:
            try:
                return _execute(["git", *prefix, *args], {**base, **(env or {})}, timeout)
            except subprocess.TimeoutExpired:
                message = f"git {_verb(args)} on {safe_url(self.url)} timed out after {timeout:g} s"
                raise SourceUnreachable(message) from None

    def _redact(self, text: str) -> str:
        """Remove every secret, including a user:password@ written into the URL (git echoes it bare)."""
        userinfo = urlsplit(self.url).netloc.rpartition("@")[0] if "://" in self.url else ""
        text = text.replace(userinfo + "@", "") if userinfo else text
        for secret in sorted([*(self.auth.secrets() if self.auth else []), userinfo], key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return safe_url(text)


@contextmanager
def git_environment(auth: GitAuth | None) -> Iterator[dict[str, str]]:
    """The whole environment of a git subprocess: PATH, HOME, a C locale, no prompts, and the auth."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    header = auth.authorization() if auth else None
    if header:
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: {header}"})
    if auth is None or auth.ssh_private_key is None:
        yield env
        return
    directory = Path(tempfile.mkdtemp(prefix="tidegate-ssh-"))  # 0700
    try:
        env["GIT_SSH_COMMAND"] = _ssh_command(directory, auth.ssh_private_key, auth.known_hosts)
        yield env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _ssh_command(directory: Path, private_key: str, known_hosts: str | None) -> str:
    key = _write_private(directory / "id", private_key if private_key.endswith("\n") else private_key + "\n")
    command = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    if known_hosts is None:
        command += ["-o", "StrictHostKeyChecking=accept-new"]
    else:
        hosts = _write_private(directory / "known_hosts", known_hosts)
        command += ["-o", f"UserKnownHostsFile={hosts}", "-o", "StrictHostKeyChecking=yes"]
    return shlex.join(command)


def _write_private(path: Path, text: str) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return path


def _execute(argv: list[str], env: dict[str, str], timeout: float) -> _Result:
    """Run one command in its own process group, so a timeout also ends ssh or remote helpers."""
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return _Result(process.returncode, stdout, stderr.decode("utf-8", "replace"))


def _ls_remote_protocol(url: str) -> list[str]:
    """Protocol v0 for `ls-remote` over `git://`: v2 writes its `ls-refs` request as several small
    packets on a socket without TCP_NODELAY, so Nagle holds them until the daemon's delayed ACK
    (~40 ms on Linux) — 50 ms a call instead of ~10. v0 loses nothing here: the refs come in the
    first answer, and git's `ls-remote` sends no ref-prefix for a pattern, so v2 lists all refs too.
    HTTP (curl sets TCP_NODELAY), SSH and file URLs keep git's default."""
    return ["-c", "protocol.version=0"] if url[:6].lower() == "git://" else []


def _verb(args: Sequence[str]) -> str:
    """The git subcommand of an argument list, for messages."""
    remaining = iter(args)
    for arg in remaining:
        if arg in ("-c", "--work-tree", "--git-dir"):
            next(remaining, None)
        elif not arg.startswith("-"):
            return arg
    return "command"


def _complaint(text: str) -> str:
    """What git said went wrong, on one line: the `fatal:`/`error:` line and whatever follows it."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    start = max((i for i, line in enumerate(lines) if line.startswith(("fatal:", "error:"))), default=0)
    return " ".join(lines[start:])[:500]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: between processes, and between threads (each opens its own descriptor)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_read_only(directory: Path) -> None:
    for current, _, files in os.walk(directory, topdown=False):
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & ~0o222)
        os.chmod(current, 0o555)


def _remove_tree(directory: Path) -> None:
    for current, _, _ in os.walk(directory):
        os.chmod(current, 0o755)
    shutil.rmtree(directory)


def prune_checkouts(root: Path, keep: Iterable[str]) -> list[str]:
    """Delete checkouts under `root` whose SHA is not in `keep`; returns the SHAs removed.

    Half-built checkouts left by a killed process are removed too, unless a build is running.
    """
    kept = set(keep)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        if _FULL_SHA.match(entry.name) and entry.is_dir() and not entry.is_symlink() and entry.name not in kept:
            with _locked(root / f".{entry.name}.lock"):
                _remove_tree(entry)
            (root / f".{entry.name}.lock").unlink(missing_ok=True)
            removed.append(entry.name)
        elif entry.name.startswith(".tmp-"):
            _remove_abandoned(root, entry)
    return removed


def _remove_abandoned(root: Path, entry: Path) -> None:
    sha = entry.name.removeprefix(".tmp-").split("-", 1)[0]
    if not _FULL_SHA.match(sha) or not entry.exists():
        return
    with (root / f".{sha}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # being built right now
        if entry.is_dir():
            _remove_tree(entry)
        else:
            entry.unlink(missing_ok=True)
