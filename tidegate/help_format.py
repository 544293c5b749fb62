"""`--help` without type noise: value placeholders say what to type, not Python's type names.

typer 0.29 renders its rich help with `display_type_rich`, which returns a type placeholder such as
`<bool>` for every option, flags (`--wait`, `--json`, `--help` itself) included, although a flag
takes no value: `--wait <bool>` reads as if it wanted `--wait true`; and `<str>`, `<int>`, `<float>`
after every other option and argument (`--revision <str>`, `environment <str>`), which says nothing
a person needs. `quiet_flags` installs, once for the whole application (so no command has to
remember a `metavar` per option):

* no placeholder after a flag, nor after an argument (its name is already in the table);
* after an option, what its value is, as `git` and `kubectl` spell it: `--revision SHA`,
  `--output FORMAT`, `--timeout SECONDS` (from `PLACEHOLDERS`, by the option's name), else from its
  type — `N` for a whole number, `PATH` for a file, the choices (`json|yaml|wide`), or the option's
  own name in capitals (`--branch BRANCH`).

An option's explicit `metavar` always wins.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

PLACEHOLDERS = {
    "revision": "SHA", "output": "FORMAT", "timeout": "SECONDS", "interval": "SECONDS", "limit": "N",
    "concurrency": "N", "comment": "WHY", "user": "USER", "as_user": "USER", "env": "ENV",
    "environment": "ENV", "token_env": "VAR", "host_token_env": "VAR", "webhook_secret_env": "VAR",
    "from_env": "VAR", "ssh_key": "FILE", "from_file": "FILE", "host_api_url": "URL",
    "host_repository": "OWNER/NAME", "queues": "QUEUES", "server": "URL", "port": "PORT", "host": "HOST",
}
"""Placeholders by the option's Python name, where its type alone would not say what to type."""
CHOICE_WORDS = {"output": "FORMAT"}
"""Choices that have one word (the formats are listed in the option's help)."""
_BY_TYPE = {"<int>": "N", "<float>": "NUMBER", "<path>": "PATH", "<file>": "FILE", "<directory>": "DIR"}


def placeholder(name: str | None, type_label: str) -> str:
    """What a value of the option `name` whose type typer calls `type_label` (`<str>`, `<int>`,
    `<json|yaml>`) is called in help."""
    if "|" in type_label:  # a choice: the choices say it best, unless they are a known family
        return CHOICE_WORDS.get(name or "", type_label.strip("<>"))
    if name in PLACEHOLDERS:
        return PLACEHOLDERS[name]
    if type_label in _BY_TYPE:
        return _BY_TYPE[type_label]
    return (name or "value").upper()


def _option_placeholder(self: TyperOption, ctx: Any) -> str | None:
    """No placeholder for a flag (it takes no value); an option's own metavar, else `placeholder`."""
    if self.metavar is not None:
        return self.metavar
    if self.is_flag:
        return None
    return placeholder(self.name, self.display_type(ctx))


def _argument_placeholder(self: TyperArgument, ctx: Any) -> str | None:
    """An argument's name (or metavar) is already in the table's first column: nothing more."""
    return None


def quiet_flags() -> None:
    """Install the placeholders on typer's options and arguments (idempotent)."""
    setattr(TyperOption, "display_type_rich", _option_placeholder)  # noqa: B010 - mypy refuses method assignment
    setattr(TyperArgument, "display_type_rich", _argument_placeholder)  # noqa: B010
