"""Jinja2 templates (`*.yaml.j2`, `*.yml.j2`) rendered in a sandbox with the environment's variables.

Templates come from the config repo, so they are hostile input: the sandbox refuses `__class__`
and friends, `StrictUndefined` turns a misspelt variable into an error instead of an empty string
in production, includes are confined to the workload directory, and a budget on loops, `*`/`**`
results and output size keeps one template from exhausting a worker. (String methods and filters
that take a width, such as `center` or `%`-formatting, can still build one large string; a memory
limit on the worker process is the complete answer to that.)

Every `*.yaml.j2`/`*.yml.j2` file of a directory renders to manifests; partials meant only for
`{% include %}` should use another suffix (`labels.j2`).
"""

from __future__ import annotations

import posixpath
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from reconciler.rendering.limits import RenderLimits
from reconciler.rendering.paths import RenderProblem, decode, is_hidden, read_limited
from repo_schema.issues import Issue, Location
from repo_schema.paths import resolve_inside

TEMPLATE_SUFFIXES = (".yaml.j2", ".yml.j2")


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
                         keep_trailing_newline=True)
        self.limits = limits
        self.loop_budget = limits.template_loop_budget
        self.globals["range"] = self._range

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


class TemplateRenderer:
    """Renders the templates of one workload directory with one variable mapping."""

    def __init__(
        self, root: Path, directory: str, variables: Mapping[str, Any], limits: RenderLimits
    ) -> None:
        self.loader = _WorkloadLoader(root, directory, limits)
        self.environment = _BoundedSandbox(self.loader, limits)
        self.directory = directory
        self.variables = dict(variables)
        self.limits = limits

    def render(self, relative: str) -> tuple[str | None, list[Issue]]:
        """The rendered text of the template at checkout-relative `relative`, or an issue."""
        name = posixpath.relpath(relative, self.directory) if self.directory else relative
        try:
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
    name = type(error).__name__
    return f"template error: {error}" if name == "UndefinedError" else f"template error ({name}): {error}"
