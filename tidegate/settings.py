"""Settings from `TIDEGATE_*` environment variables and an optional YAML config file.

Precedence, highest first: environment variables, the file named by `TIDEGATE_CONFIG_FILE`,
defaults. Secrets are `SecretStr` so that printing settings never shows them.

Each secret may instead be read from a file named by `TIDEGATE_<NAME>_FILE` (`SECRET_FILE_FIELDS`):
Docker and Kubernetes secrets arrive as files, and a value in a file stays out of the environment
that `docker inspect`, `/proc/<pid>/environ` and every child process see. The variable itself wins
over the file; sealed repository code sees neither the variable (clean environments) nor the file
(`sealed_paths`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

#: Settings that hold secrets (or URLs with passwords in them), and so may come from a file.
SECRET_FILE_FIELDS = ("database_url", "redis_url", "secret_key", "webhook_secret", "token")


class SecretFileError(ValueError):
    """A `TIDEGATE_<NAME>_FILE` names a file that cannot be read, or one that is empty."""


def secret_file_variable(field_name: str) -> str:
    return f"TIDEGATE_{field_name.upper()}_FILE"


def secret_files() -> dict[str, Path]:
    """The secret files this process's environment names, by setting."""
    return {name: Path(os.environ[secret_file_variable(name)]) for name in SECRET_FILE_FIELDS
            if os.environ.get(secret_file_variable(name))}


class SecretFileSettingsSource(PydanticBaseSettingsSource):
    """`TIDEGATE_<NAME>_FILE=/run/secrets/…`: the setting's value is the file's content, trimmed of
    the trailing newline an editor or `echo` leaves."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, path in secret_files().items():
            if os.environ.get(f"TIDEGATE_{name.upper()}"):
                continue  # the variable wins; its file need not even exist
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                raise SecretFileError(f"{secret_file_variable(name)}: cannot read {path}: "
                                      f"{getattr(error, 'strerror', None) or error}") from None
            if not text:
                raise SecretFileError(f"{secret_file_variable(name)}: {path} is empty")
            values[name] = text
        return values


def default_data_dir() -> Path:
    """The embedded default keeps everything under one directory, as the XDG spec suggests."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tidegate"


class Settings(BaseSettings):
    """Everything Tidegate reads from its environment; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="TIDEGATE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="SQLite file, checkouts, run artifacts.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    secret_key: SecretStr | None = Field(default=None, description="Fernet key for stored secrets.")
    terraform_plugin_dirs: str = Field(default="", description="Provider mirror roots, ':'-separated.")
    log_level: str = "INFO"
    redis_url: str | None = Field(default=None, description="redis:// or unix:// URL; default the socket of "
                                  "the Redis that `tidegate up` starts in data_dir/redis.")
    sandbox_map: Path | None = Field(default=None, description="Endpoint map of a sandbox session (sandbox mode).")
    worker_concurrency: int = 2
    scheduler_tick: float = Field(default=5.0, description="Seconds between beat ticks that queue due polls/drift.")
    sweep_interval: float = 30.0
    poll_jitter: float = Field(default=60.0, description="Up to this many seconds added to each poll interval.")
    lock_ttl: float = Field(default=120.0, description="Seconds an environment lock lives without renewal.")
    visibility_timeout: float = Field(default=7200.0, description="Broker redelivery after this many seconds; "
                                      "must exceed the longest Terraform run.")
    live_watches: bool = Field(default=True, description="Run live Kubernetes watches (one leader worker).")
    leader_ttl: float = Field(default=15.0, description="Seconds before another worker takes the watches over.")
    webhook_secret: SecretStr | None = Field(default=None, description="Default webhook secret of every "
                                             "repository that has none of its own.")
    public_url: str = Field(default="http://127.0.0.1:8080", description="Where people reach the dashboard "
                            "(links in PR comments and commit statuses).")
    db_pool_size: int = Field(default=5, description="PostgreSQL connections each process keeps open in its "
                              "pool (every worker pool child, a worker's main process twice, each serve).")
    db_max_overflow: int = Field(default=10, description="More PostgreSQL connections each pool may open under "
                                 "load; a process holds at most db_pool_size + db_max_overflow.")
    db_pool_timeout: float = Field(default=30.0, description="Seconds a session waits for a free connection of "
                                   "its pool before it fails.")
    server: str | None = Field(default=None, description="URL of a `tidegate serve`: the CLI then talks to its API.")
    token: SecretStr | None = Field(default=None, description="API token for TIDEGATE_SERVER.")
    health_timeout: float = Field(default=300.0, description="Seconds to wait for workloads to become healthy.")
    runner_user: str = Field(default="tidegate-runner", description="The unprivileged user repository code "
                             "(Terraform, Ansible, kustomize, Jinja) runs as, sealed.")
    seal_hide: str = Field(default="", description="More paths, ':'-separated, that sealed repository code "
                           "must not see (the data dir, the service user's home and the config file always are).")

    @field_validator("db_pool_size", "db_max_overflow", mode="before")
    @classmethod
    def _whole_number(cls, value: Any, info: ValidationInfo) -> int:
        """A clear error naming the variable, where pydantic would only say "should be a valid integer"."""
        least = 1 if info.field_name == "db_pool_size" else 0
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or int(text) < least:
            raise ValueError(f"TIDEGATE_{str(info.field_name).upper()} must be a whole number of at least {least} "
                             f"(PostgreSQL connections per process), not {value!r}")
        return int(text)

    @field_validator("db_pool_timeout", mode="before")
    @classmethod
    def _positive_seconds(cls, value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if isinstance(value, bool) or not seconds > 0 or seconds == float("inf"):
            raise ValueError(f"TIDEGATE_DB_POOL_TIMEOUT must be a number of seconds above 0, not {value!r}")
        return seconds

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("TIDEGATE_CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings,
                                                     SecretFileSettingsSource(settings_cls)]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def redis_socket(self) -> Path:
        return self.data_dir / "redis" / "redis.sock"

    @property
    def client_redis_url(self) -> str:
        """For redis-py (locks, schedules)."""
        return self.redis_url or f"unix://{self.redis_socket}"

    @property
    def broker_url(self) -> str:
        """For Celery/kombu (`unix://` is spelled `redis+socket://` there)."""
        url = self.client_redis_url
        return "redis+socket://" + url[len("unix://"):] if url.startswith("unix://") else url

    @property
    def render_cache_dir(self) -> Path:
        return self.data_dir / "cache" / "render"

    @property
    def sealed_paths(self) -> list[Path]:
        """What sealed repository code must not see: the data dir (store, secret key, Redis socket,
        every workspace), the service user's home, the settings file, the secret files, a SQLite file
        kept elsewhere."""
        hidden = [self.data_dir, Path.home(), *secret_files().values()]
        config_file = os.environ.get("TIDEGATE_CONFIG_FILE")
        if config_file:
            hidden.append(Path(config_file))
        if self.database_url and self.database_url.startswith("sqlite:///"):
            hidden.append(Path(self.database_url.removeprefix("sqlite:///")).parent)
        hidden += [Path(part) for part in self.seal_hide.split(":") if part]
        return hidden

    @property
    def plugin_dirs(self) -> list[Path]:
        return [Path(part) for part in self.terraform_plugin_dirs.split(":") if part]
