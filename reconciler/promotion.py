"""Promotion: an environment that `dependsOn` another applies a revision only after that one is
healthy at it.

"At it" means that no path the other environment reads changed between its synced revision and
this one: a commit that touches only production's overlay does not make production wait for
staging to sync a revision that changes nothing for staging.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from reconciler import repositories
from reconciler.runtime import Services
from reconciler.sources.git import SourceError
from reconciler.sources.paths import reads_changed
from repo_schema.loader import LoadedRepo
from store import Health, Repository
from store.queries import environment_by_name


def waiting_on(session: Session, services: Services, repository: Repository, loaded: LoadedRepo,
               environment: str, sha: str) -> str | None:
    """Why `environment` may not apply `sha` yet (None when every dependency is ready)."""
    for dependency in loaded.environments[environment].spec.depends_on:
        row = environment_by_name(session, repository.id, dependency)
        if row is None or row.synced_revision is None:
            return f"{dependency} has not synced yet"
        if row.health is not Health.HEALTHY:
            return f"{dependency} is {row.health} at {row.synced_revision.sha[:12]}"
        synced = row.synced_revision.sha
        if synced == sha:
            continue
        try:
            changed = repositories.source_for(services, repository).changed_paths(synced, sha)
        except SourceError:
            return f"{dependency} is at {synced[:12]}, which cannot be compared with {sha[:12]}"
        if reads_changed(loaded, dependency, changed):
            return f"{dependency} is not yet synced and healthy at {sha[:12]} (it is at {synced[:12]})"
    return None
