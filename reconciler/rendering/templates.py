"""Jinja2 templates (`*.yaml.j2`, `*.yml.j2`) rendered in a sandbox with the environment's variables.

Templates come from the config repo, so they are code whoever can push or open a pull request
wrote. They never run in the worker: `TemplateRenderer` renders a directory's templates in one
sealed child process (`python -I -m reconciler.rendering.sealed_templates`, see
providers/sealed.py: the runner user, no network, only the checkout to read, a memory and CPU
rlimit), and reads its answer back as JSON. Inside it, the Jinja sandbox refuses `__class__` and
friends, `StrictUndefined` turns a misspelt variable into an error instead of an empty string in
production, includes are confined to the workload directory, and budgets on loops, `*`/`**`
results, padding widths (`'a'.ljust(10**9)`), output size and time stop a bomb at its template
line; the child's memory limit stops what the budgets do not foresee.

Every `*.yaml.j2`/`*.yml.j2` file of a directory renders to manifests; partials meant only for
`{% include %}` should use another suffix (`labels.j2`).
"""

from __future__ import annotations

import json
import posixpath
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from providers import sealed
from reconciler.rendering.limits import RenderLimits
from reconciler.rendering.paths import RenderProblem, decode, is_hidden, read_limited
from repo_schema.documents import Limits
from repo_schema.issues import Issue, Location
from repo_schema.paths import resolve_inside

TEMPLATE_SUFFIXES = (".yaml.j2", ".yml.j2")
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


class TemplateTimeout(Exception):
    """A template ran past its time limit (raised inside it, so the traceback names its line)."""


def is_template(path: str) -> bool:
    return path.endswith(TEMPLATE_SUFFIXES)


class _WorkloadLoader(BaseLoader):
    """Loads templates by name relative to the workload directory, and only from inside it."""

    def __init__(self, root: Path, directory: str, limits: RenderLimits) -> None:
        self.root = root
        self.directory = directory
        self.limits = limits
        self.loaded: set[str] = set()
        self.sources: dict[str, str] = {}

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        relative = self._relative(template)
        try:
            real, _ = resolve_inside(self.root, relative)
            text = decode(read_limited(real, relative, self.limits.file.max_bytes), relative)
        except RenderProblem as error:
            raise TemplateNotFound(template, f"template {template!r}: {error}") from None
        self.loaded.add(relative)
        self.sources[relative] = text
        return text, relative, lambda: False

    def _relative(self, template: str) -> str:
        if template.startswith("/") or "\\" in template or any(
            part == ".." or is_hidden(part) for part in template.split("/")
        ):
            raise TemplateNotFound(template, f"template {template!r} must be a relative path inside the "
                                             "workload directory (no '..' or hidden files)")
        return posixpath.join(self.directory, template) if self.directory else template


class _BoundedSandbox(SandboxedEnvironment):
    """The stock sandbox plus caps on `*`/`**` results and on total `range` iterations."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, loader: _WorkloadLoader, limits: RenderLimits) -> None:
        super().__init__(loader=loader, undefined=StrictUndefined, autoescape=False,
                         keep_trailing_newline=True, finalize=self._finalize)
        self.limits = limits
        self.loop_budget = limits.template_loop_budget
        self.output_budget = limits.file.max_bytes
        self.globals["range"] = self._range

    def _finalize(self, value: Any) -> Any:
        """Every `{{ expression }}` passes here: its size counts against the output budget where it
        is written, so the error names that line (literal text is bounded by the file size)."""
        size = len(value) if isinstance(value, str) else len(str(value))
        self.output_budget -= size
        if self.output_budget < 0:
            raise RenderProblem(f"rendered output exceeds {self.limits.file.max_bytes} characters")
        return value

    def call(self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Refuse a padding width beyond the output budget before the string is built."""
        if getattr(__obj, "__name__", "") in _PADDING_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            widths = [value for value in (*args, *kwargs.values()) if isinstance(value, int)]
            if any(width > self.limits.file.max_bytes for width in widths):
                raise SecurityError(f"a padding width above {self.limits.file.max_bytes} characters")
        return super().call(__context, __obj, *args, **kwargs)

    def _range(self, *args: int) -> Iterator[int]:
        numbers = range(*args)
        if len(numbers) > self.loop_budget:
            raise SecurityError(f"range() would exceed the template loop budget of "
                                f"{self.limits.template_loop_budget} iterations")
        self.loop_budget -= len(numbers)
        return iter(numbers)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        cap = self.limits.template_max_sequence
        numbers = (int, float)
        if operator == "**" and isinstance(left, numbers) and isinstance(right, numbers) and \
                abs(right) > 64 and abs(left) > 1:
            raise SecurityError("exponent too large in a template")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(times, int) and \
                        len(sequence) * times > cap:
                    raise SecurityError(f"a template value would exceed {cap} items")
        return super().call_binop(context, operator, left, right)


class LocalTemplates:
    """Renders templates in this process: only ever inside the sealed child (`sealed_templates`)."""

    def __init__(
        self, root: Path, directory: str, variables: Mapping[str, Any], limits: RenderLimits
    ) -> None:
        self.loader = _WorkloadLoader(root, directory, limits)
        self.environment = _BoundedSandbox(self.loader, limits)
        self.directory = directory
        self.variables = dict(variables)
        self.limits = limits

    def render(self, relative: str, seconds: float | None = None) -> tuple[str | None, list[Issue]]:
        """The rendered text of the template at checkout-relative `relative`, or an issue."""
        name = posixpath.relpath(relative, self.directory) if self.directory else relative
        try:
            with _time_limit(seconds):
                template = self.environment.get_template(name)
                return self._collect(template.generate(self.variables), relative), []
        except TemplateSyntaxError as error:
            where = Location(error.filename or relative, error.lineno or 1)
            return None, [Issue(where, "<template>", f"template syntax error: {error.message}")]
        except Exception as error:  # a hostile template may raise anything; all of it is the user's
            return None, [Issue(self._error_location(error, relative), "<template>", _describe(error))]

    def source(self, relative: str) -> str:
        """The text of a template this renderer loaded."""
        return self.loader.sources[relative]

    def _collect(self, chunks: Iterator[str], relative: str) -> str:
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.limits.file.max_bytes:
                raise RenderProblem(f"rendered output exceeds {self.limits.file.max_bytes} characters")
            parts.append(chunk)
        return "".join(parts)

    def _error_location(self, error: BaseException, relative: str) -> Location:
        """The innermost template frame: Jinja rewrites tracebacks so frames carry template lines."""
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            if frame.filename in self.loader.loaded and frame.lineno:
                return Location(frame.filename, frame.lineno)
        return Location(relative)


def _describe(error: BaseException) -> str:
    if isinstance(error, SecurityError):
        return f"refused by the template sandbox: {error}"
    if isinstance(error, TemplateNotFound):
        return error.message or f"template {error.name!r} not found"
    if isinstance(error, RecursionError):
        return "template recursion too deep"
    if isinstance(error, RenderProblem):
        return str(error)
    if isinstance(error, TemplateTimeout):
        return f"template rendering did not finish within {error} s"
    if isinstance(error, MemoryError):
        return "template rendering exceeded its memory limit"
    name = type(error).__name__
    return f"template error: {error}" if name == "UndefinedError" else f"template error ({name}): {error}"


class _time_limit:
    """SIGALRM raises TemplateTimeout inside the template after `seconds` (the child's main thread)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if self.seconds:
            signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *_: object) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        raise TemplateTimeout(f"{self.seconds:g}")


class TemplateRenderer:
    """Renders the templates of one workload directory with one variable mapping, sealed.

    All templates of the directory go to one child process on the first `render` (a Python start
    per template would cost more than the rendering); their texts and issues come back as JSON."""

    def __init__(self, root: Path, directory: str, variables: Mapping[str, Any], limits: RenderLimits,
                 templates: Sequence[str] = ()) -> None:
        self.root = root
        self.directory = directory
        self.variables = dict(variables)
        self.limits = limits
        self.templates = list(templates)
        self._results: dict[str, tuple[str | None, list[Issue]]] | None = None

    def render(self, relative: str) -> tuple[str | None, list[Issue]]:
        """The rendered text of the template at checkout-relative `relative`, or its issues."""
        if self._results is None or relative not in self._results:
            names = [*self.templates, relative] if relative not in self.templates else self.templates
            self._results = {**(self._results or {}), **self._render_sealed(names)}
        return self._results[relative]

    def source(self, relative: str) -> str:
        """The text of a template (for aligning output lines with it)."""
        real, _ = resolve_inside(self.root, relative)
        return decode(read_limited(real, relative, self.limits.file.max_bytes), relative)

    def _render_sealed(self, names: list[str]) -> dict[str, tuple[str | None, list[Issue]]]:
        request = {"root": str(self.root), "directory": self.directory, "variables": self.variables,
                   "limits": asdict(self.limits), "templates": names}
        argv = [sys.executable, "-I", "-m", "reconciler.rendering.sealed_templates"]
        wall = self.limits.template_seconds * max(1, len(names)) + 30
        try:
            command = sealed.current().command(argv, sealed.Confinement(
                cwd=self.root, readable=(self.root,), network=False, limits=sealed.RENDER_LIMITS))
            done = sealed.run(command, cwd=self.root, input=json.dumps(request, default=str).encode(), timeout=wall,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
        except sealed.SealUnavailable as refused:
            return {name: (None, [Issue(Location(name), "<template>", str(refused))]) for name in names}
        except subprocess.TimeoutExpired as expired:
            return _unfinished(names, _progress(expired.stderr), f"did not finish within {wall:g} s")
        try:
            answer = json.loads(done.stdout.decode("utf-8"))
        except ValueError:
            return _unfinished(names, _progress(done.stderr), f"stopped (exit {done.returncode}): "
                               "it exceeded a limit (memory, CPU time) or crashed")
        return {name: (result["text"], [_issue(raw) for raw in result["issues"]])
                for name, result in answer["results"].items()}


def _progress(stderr: str | bytes | None) -> str | None:
    """The template the child was rendering when it stopped (it prints each name before starting)."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    started = [line.removeprefix("rendering ") for line in text.splitlines() if line.startswith("rendering ")]
    return started[-1] if started else None


def _unfinished(names: list[str], current: str | None, reason: str) -> dict[str, tuple[str | None, list[Issue]]]:
    culprit = current or names[0]
    results: dict[str, tuple[str | None, list[Issue]]] = {}
    for name in names:
        message = f"template rendering {reason}" if name == culprit else \
            f"not rendered: rendering {culprit} {reason}"
        results[name] = (None, [Issue(Location(name), "<template>", message)])
    return results


def _issue(raw: Mapping[str, Any]) -> Issue:
    return Issue(Location(str(raw["file"]), int(raw["line"]), int(raw["column"])), str(raw["field"]),
                 str(raw["message"]))


def serve_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The child's side: render each template named in `request` here (see sealed_templates)."""
    raw = dict(request["limits"])
    limits = RenderLimits(**{**raw, "file": Limits(**raw["file"])})
    local = LocalTemplates(Path(request["root"]), request["directory"], request["variables"], limits)
    results: dict[str, Any] = {}
    for name in request["templates"]:
        print(f"rendering {name}", file=sys.stderr, flush=True)
        local.environment.output_budget = limits.file.max_bytes
        text, issues = local.render(name, seconds=limits.template_seconds)
        results[name] = {"text": text, "issues": [
            {"file": i.location.file, "line": i.location.line, "column": i.location.column, "field": i.field,
             "message": i.message} for i in issues]}
    return {"results": results}
