"""Run the `terraform` binary: a clean per-call environment, a working directory, a timeout that
interrupts before it kills, output streamed line by line, and `-json` output parsed into types.

The environment of each call is built from a small base (PATH, HOME, locale, temp dir) plus what
the caller passes; the caller's own environment is never inherited wholesale, so an operator's
`TF_*` or `AWS_*` variables cannot leak into a run. Every streamed line goes through `Masker`
first: values registered as secret never reach a log or a callback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from providers import sealed
from providers.stage import MASK, StageFailed

log = logging.getLogger(__name__)

LineCallback = Callable[[str, str], None]
"""Called with (stream, line) for each line terraform prints; stream is "stdout" or "stderr"."""

_BASE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "SSL_CERT_FILE", "SSL_CERT_DIR")
_ALWAYS = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}


@dataclass(frozen=True)
class Diagnostic:
    """One of terraform's diagnostics (`-json` output), with the place in the module when known."""

    severity: str
    summary: str
    detail: str = ""
    filename: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        if self.filename is None:
            return ""
        return f"{self.filename}:{self.line}" if self.line is not None else self.filename

    def __str__(self) -> str:
        detail = " ".join(self.detail.split())
        text = f"{self.summary}: {detail}" if detail else self.summary
        return f"{self.location}: {text}" if self.location else text

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Diagnostic:
        place = data.get("range") or {}
        start = place.get("start") or {}
        return cls(
            severity=str(data.get("severity", "error")),
            summary=str(data.get("summary", "")).strip(),
            detail=str(data.get("detail", "")),
            filename=place.get("filename"),
            line=start.get("line"),
            column=start.get("column"),
        )


class TerraformError(StageFailed):
    """Terraform failed; the message lists its error diagnostics (file:line first when known)."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = (), returncode: int | None = None,
                 result: RunResult | None = None):
        super().__init__(message)
        self.diagnostics = list(diagnostics)
        self.returncode = returncode
        self.result = result


class TerraformTimeout(TerraformError):
    """The command ran past its timeout and was interrupted (then killed if it did not stop)."""


@dataclass
class Masker:
    """Replaces registered secret values in text with the mask."""

    secrets: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.secrets.update(value for value in values if value and len(value) >= 4)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text


@dataclass
class RunResult:
    """What one terraform command did. `messages` are the parsed `-json` lines (streamed commands)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [Diagnostic.from_json(m["diagnostic"]) for m in self.messages
                if m.get("type") == "diagnostic" and isinstance(m.get("diagnostic"), dict)]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def json(self) -> Any:
        """stdout as one JSON document (`show -json`, `output -json`, `version -json`)."""
        return json.loads(self.stdout)


def clean_environment(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one call: a few harmless variables of `base` (default: this process),
    the automation flags, then `extra` (credentials, TF_CLI_CONFIG_FILE, ...)."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in _BASE_VARIABLES if name in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(_ALWAYS)
    env.update(extra or {})
    return env


class Runner:
    """Runs terraform commands in one working directory with one environment."""

    def __init__(
        self,
        cwd: Path,
        env: Mapping[str, str],
        *,
        binary: str = "terraform",
        timeout: float = 1800.0,
        grace: float = 30.0,
        on_line: LineCallback | None = None,
        masker: Masker | None = None,
        seal: sealed.Seal | None = None,
        confinement: sealed.Confinement | None = None,
    ) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.binary = binary
        self.timeout = timeout
        self.grace = grace
        self.on_line = on_line
        self.masker = masker or Masker()
        self.seal = seal or sealed.current()
        self.confinement = confinement or sealed.Confinement(cwd=cwd, writable=(cwd,))
        self.transcript: list[str] = []

    def run(
        self,
        args: Sequence[str],
        *,
        ok: Iterable[int] = (0,),
        timeout: float | None = None,
        stream: bool = True,
    ) -> RunResult:
        """Run `terraform ARGS`; raise TerraformError unless the exit code is in `ok`.

        With `stream`, stdout lines are logged, passed to the callback, and (when they are JSON)
        collected as messages; without it stdout is kept whole and unlogged (it may hold secrets,
        as `show -json` and `output -json` do).
        """
        command = self.seal.command([self.binary, *args], self.confinement)
        self.seal.hand_over(*self.confinement.writable)
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            # The seal's outer process must outlive an interrupt: terraform gets SIGINT through the
            # process group and needs time to release its state lock (see `_stop`).
            preexec_fn=_ignore_interrupts,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        stdout_lines: list[str] = []
        stderr_lines: list[str] = []
        messages: list[dict[str, Any]] = []
        assert process.stdout is not None and process.stderr is not None
        readers = [
            threading.Thread(target=self._pump,
                             args=(process.stdout, "stdout", stdout_lines, messages if stream else None, stream),
                             daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, "stderr", stderr_lines, None, True),
                             daemon=True),
        ]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._stop(process)
        finally:
            if process.poll() is None:  # interrupted from outside (KeyboardInterrupt): stop it too
                self._stop(process)
        for reader in readers:
            reader.join(timeout=10)
        result = RunResult(
            args=list(args),
            returncode=process.returncode,
            stdout="".join(stdout_lines),
            stderr="".join(stderr_lines),
            seconds=time.monotonic() - started,
            messages=messages,
        )
        log.debug("terraform %s: exit %s in %.1fs", args[0] if args else "", result.returncode, result.seconds)
        if timed_out:
            raise TerraformTimeout(
                f"terraform {' '.join(args[:1])} timed out after {limit:g}s and was interrupted",
                result.errors, result.returncode, result)
        if result.returncode not in set(ok):
            raise error_from(result, self.masker)
        return result

    def _pump(self, pipe: IO[str], stream: str, lines: list[str], messages: list[dict[str, Any]] | None,
              echo: bool) -> None:
        for line in pipe:
            lines.append(line)
            if messages is not None and line.startswith("{"):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    messages.append(parsed)
                    line = str(parsed.get("@message", line))
            if not echo:
                continue
            text = self.masker(line.rstrip("\n"))
            self.transcript.append(text)
            log.info("terraform: %s", text)
            if self.on_line is not None:
                self.on_line(stream, text)
        pipe.close()

    def _stop(self, process: subprocess.Popen[str]) -> None:
        """SIGINT first, so terraform stops gracefully and releases its state lock; SIGKILL the
        whole process group (terraform and its provider plugins) after the grace period.

        The interrupt goes to the process group: terraform runs sealed, under a wrapper that
        ignores it (`_ignore_interrupts`) while terraform, which asks Go for SIGINT, receives it."""
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=self.grace)
            return
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def error_from(result: RunResult, masker: Masker | None = None) -> TerraformError:
    """A TerraformError from a failed command: its error diagnostics, else its stderr text."""
    mask = masker or Masker()
    errors = result.errors
    if errors:
        text = "; ".join(str(d) for d in errors)
    else:
        text = " ".join(result.stderr.split()) or f"exit code {result.returncode}"
    command = result.args[0] if result.args else ""
    return TerraformError(mask(f"terraform {command} failed: {text}"), errors, result.returncode, result)
