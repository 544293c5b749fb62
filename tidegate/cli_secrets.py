"""`tidegate secret set|list|delete|rotate-key`: stored secrets on this machine's store.

Composition only: each command calls `reconciler.secrets` (the functions the API's
`/api/v1/secrets` endpoints use) or `store.rotation`. Like `tidegate policy`, it works on the data
directory: whoever runs it holds the store and its key. Values are read from a file, an environment
variable or stdin — never from the command line, where `ps` and shell history would keep them — and
are never printed; `list` shows names, scopes and fingerprints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reconciler import secrets
from reconciler.rendering.age import generate_identity
from store import SecretBox, SecretKeyError
from store.rotation import rotate, rotate_key_file
from tidegate.client import os_login
from tidegate.settings import Settings
from tidegate.wiring import Store, missing_store, open_store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
secret_app = typer.Typer(help="Stored secrets the config repos refer to (privateKeyRef.secret, secretRef, "
                              "kubeconfigFrom.secret): values are encrypted and never shown.",
                         no_args_is_help=True)

RepoOption = Annotated[str | None, typer.Option("--repo", help="Visible to this repository only.")]
EnvOption = Annotated[str | None, typer.Option("--env", help="Visible to this environment only (needs --repo).")]


def _fail(error: Exception) -> typer.Exit:
    field = getattr(error, "field", None)
    prefix = f"{field}: " if field and not str(error).startswith(f"{field}:") else ""
    err.print(f"[red]error[/red]: {prefix}{error}", highlight=False)
    return typer.Exit(1)


def _actor() -> str:
    return f"cli:{os_login() or 'unknown'}"


def _store(settings: Settings) -> Store:
    missing = missing_store(settings)
    if missing is not None:
        raise _fail(ValueError(f"{missing}: `tidegate init` creates one; or point TIDEGATE_DATA_DIR or "
                               "TIDEGATE_DATABASE_URL at yours"))
    return open_store(settings, migrate=False)


def _scope(repo: str | None, env: str | None) -> secrets.Scope:
    try:
        return secrets.Scope(repo, env)
    except secrets.SecretError as error:
        raise _fail(error) from None


def _value(from_file: Path | None, from_env: str | None, stdin: bool) -> str:
    """The value from exactly one source; a file keeps its bytes (a key's final newline included)."""
    if sum((from_file is not None, from_env is not None, stdin)) != 1:
        raise _fail(ValueError("give the value with exactly one of --from-file FILE, --from-env VARIABLE, --stdin"))
    if from_file is not None:
        try:
            return from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise _fail(ValueError(f"--from-file {from_file}: {getattr(error, 'strerror', None) or error}")) from None
    if from_env is not None:
        value = os.environ.get(from_env)
        if value is None:
            raise _fail(ValueError(f"--from-env {from_env}: the variable is not set"))
        return value
    return sys.stdin.read()


@secret_app.command("set")
def set_secret(
    name: Annotated[str, typer.Argument(help="The name references use (secretRef: NAME).")],
    repo: RepoOption = None,
    env: EnvOption = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Read the value from this file.")] = None,
    from_env: Annotated[str | None, typer.Option("--from-env", help="Read the value from this variable.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the value from standard input.")] = False,
) -> None:
    """Store (or replace) a secret: global without --repo (admins), else for one repository or environment."""
    scope = _scope(repo, env)
    value = _value(from_file, from_env, stdin)
    store = _store(Settings())
    try:
        with store.database.session(write=True) as session:
            info = secrets.set_secret(session, store.secrets, name, scope, value, _actor())
    except secrets.SecretError as error:
        raise _fail(error) from None
    out.print(f"secret {info.name} set for {_describe(info.scope)} ({info.fingerprint})", markup=False)


@secret_app.command("list")
def list_secrets(repo: RepoOption = None, env: EnvOption = None) -> None:
    """List stored secrets: name, scope, fingerprint, when and by whom set. Never values."""
    scope = None if repo is None and env is None else _scope(repo, env)
    store = _store(Settings())
    with store.database.session() as session:
        rows = secrets.list_secrets(session, scope)
    if not rows:
        out.print("no stored secrets", markup=False)
        return
    out.print(f"{'NAME':<24} {'SCOPE':<28} {'FINGERPRINT':<30} {'UPDATED':<20} BY", markup=False)
    for info in rows:
        out.print(f"{info.name:<24} {info.scope:<28} {info.fingerprint:<30} "
                  f"{info.updated_at:%Y-%m-%d %H:%M:%S}  {info.updated_by}", markup=False)


@secret_app.command("delete")
def delete_secret(name: str, repo: RepoOption = None, env: EnvOption = None) -> None:
    """Delete a stored secret from one scope (references to it fail until it is set again)."""
    scope = _scope(repo, env)
    store = _store(Settings())
    with store.database.session(write=True) as session:
        deleted = secrets.delete_secret(session, name, scope, _actor())
    if not deleted:
        raise _fail(ValueError(f"no secret {name!r} in {_describe(scope.key)}"))
    out.print(f"secret {name} deleted from {_describe(scope.key)}", markup=False)


@secret_app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored secret, credential and sealed output under a new key.

    With the embedded key file (no TIDEGATE_SECRET_KEY): a new key is generated, put first in the
    file (running processes re-read it), everything is re-encrypted, then the old key is dropped.
    With TIDEGATE_SECRET_KEY: give every process NEW,OLD first, run this, then drop OLD."""
    settings = Settings()
    store = _store(settings)
    try:
        if settings.secret_key is None:
            report = rotate_key_file(settings.data_dir, store.database)
        else:
            if store.secrets.key_count < 2:
                raise _fail(ValueError("TIDEGATE_SECRET_KEY holds one key: set it to NEW,OLD (a new key first, "
                                       "generate one with `tidegate secret new-key`) in every process, then run this"))
            report = rotate(store.database, store.secrets)
    except SecretKeyError as error:
        raise _fail(error) from None
    tables = ", ".join(f"{table} {count}" for table, count in report.rotated.items() if count) or "nothing to do"
    out.print(f"re-encrypted {report.total} values under the new key ({tables})", markup=False)
    if settings.secret_key is not None:
        out.print("every value now opens with the first key: remove the old key(s) from TIDEGATE_SECRET_KEY",
                  markup=False)


@secret_app.command("age-key")
def age_key(name: Annotated[str, typer.Argument(help="The stored secret to hold the identity.")],
            repo: RepoOption = None, env: EnvOption = None) -> None:
    """Generate an age identity for SOPS, store it as secret NAME, print its public key (the
    recipient for .sops.yaml). The identity itself is never printed."""
    scope = _scope(repo, env)
    identity, recipient = generate_identity()
    store = _store(Settings())
    try:
        with store.database.session(write=True) as session:
            info = secrets.set_secret(session, store.secrets, name, scope, identity + "\n", _actor())
    except secrets.SecretError as error:
        raise _fail(error) from None
    err.print(f"secret {info.name} set for {_describe(info.scope)}: an age identity; its recipient:", markup=False)
    sys.stdout.write(recipient + "\n")


@secret_app.command("new-key")
def new_key() -> None:
    """Print a fresh key for TIDEGATE_SECRET_KEY (to rotate: NEW,OLD everywhere, then rotate-key)."""
    sys.stdout.write(SecretBox.generate_key() + "\n")


def _describe(scope: str) -> str:
    if scope == secrets.GLOBAL:
        return "every repository (global)"
    return f"environment {scope}" if "/" in scope else f"repository {scope}"


def register(app: typer.Typer) -> None:
    app.add_typer(secret_app, name="secret")
