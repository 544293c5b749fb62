"""Which registered repositories a delivery is about, and the secret each one's deliveries are signed with.

A payload names its repository by clone URLs and by the host's own name (`owner/name`, GitLab's
project path or id). URLs are compared in a canonical form (no scheme, no credentials, no `.git`,
`git@host:path` spelled `host/path`), so a repository registered by its SSH URL matches a payload
that carries its HTTPS clone URL. Only registered repositories ever cause work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from store import Repository, SecretBox

_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?([^:/\s]+):(?!//)(.+)$")


def canonical(url: str) -> str:
    """`host/path` in lower case, without scheme, user info, default-port noise, `.git` or slashes."""
    value = url.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
        value = value.rsplit("@", 1)[-1] if "@" in value.split("/", 1)[0] else value
    else:
        scp = _SCP_LIKE.match(value)
        if scp:
            value = f"{scp.group(1)}/{scp.group(2)}"
    value = value.rstrip("/")
    value = value[:-4] if value.endswith(".git") else value
    return value.lower()


@dataclass(frozen=True)
class Candidate:
    """A registered repository a delivery may be about, and the secret to check its signature with."""

    repository_id: int
    name: str
    branch: str
    secret: str | None


def candidates(session: Session, box: SecretBox, default: SecretStr | None, urls: tuple[str, ...],
               names: tuple[str, ...]) -> list[Candidate]:
    """Registered repositories whose URL or host name the payload gives, each with its secret."""
    wanted_urls = {canonical(url) for url in urls if url}
    wanted_names = {name.strip().lower() for name in names if name}
    found: list[Candidate] = []
    for repository in session.scalars(select(Repository).order_by(Repository.id)):
        same_url = canonical(repository.url) in wanted_urls
        same_name = bool(repository.host_repository) and str(repository.host_repository).lower() in wanted_names
        if same_url or same_name:
            found.append(Candidate(repository.id, repository.name, repository.branch,
                                   secret_of(box, repository, default)))
    return found


def secret_of(box: SecretBox, repository: Repository, default: SecretStr | None) -> str | None:
    """The repository's own webhook secret, else the default one; None means unverifiable (refused)."""
    if repository.webhook_secret is not None:
        return box.unseal_secret(repository.webhook_secret)
    return default.get_secret_value() if default is not None and default.get_secret_value() else None

