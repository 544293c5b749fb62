"""Polling a registered repository: cheap when nothing moved, path-filtered when something did,
and reported (last good state kept) when the remote is unreachable, rewritten or gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from reconciler import pollstats, repositories
from reconciler.runtime import Services
from reconciler.sources.git import GitSource
from store import AuditEvent, Database, Environment, Repository, Sync, utcnow
from tests.support.doubles import RecordingQueue
from tests.support.git_server import closed_port_url, commit_and_push, delete_branch, files_of, make_bare_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"


def _register(services: Services, url: str, branch: str = "main") -> int:
    with services.database.session() as session:
        return repositories.register(services, session, name="infra", url=url, branch=branch).id


def _queued(services: Services) -> list[tuple[str, int]]:
    assert isinstance(services.queue, RecordingQueue)
    sent, services.queue.sent = list(services.queue.sent), []
    return sent


def _mark_synced(services: Services) -> None:
    """Pretend every environment applied its desired revision (these tests are about polling)."""
    with services.database.session() as session:
        for env in session.scalars(select(Environment)):
            env.synced_revision_id = env.desired_revision_id
        for sync in session.scalars(select(Sync)):
            sync.status = sync.status.SUCCEEDED


def test_the_first_poll_plans_every_environment_and_an_unmoved_head_plans_nothing(
        services: Services, tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    head = make_bare_repo(bare, files_of(EXAMPLE))
    repository_id = _register(services, str(bare))
    first = repositories.poll(services, repository_id)
    assert first.moved and first.head == head and set(first.planned) == {"staging", "production"}
    assert [kind for kind, _ in _queued(services)] == ["plan", "plan"]
    again = repositories.poll(services, repository_id)
    assert not again.moved and again.planned == () and _queued(services) == []


def test_a_production_only_change_plans_production_and_moves_staging_along(services: Services,
                                                                           tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE))
    repository_id = _register(services, str(bare))
    repositories.poll(services, repository_id)
    _queued(services)
    _mark_synced(services)
    patch = "apps/web/overlays/production/configmap-patch.yaml"
    sha = commit_and_push(bare, {patch: (EXAMPLE / patch).read_text() + "  EXTRA: \"1\"\n"}, "production only")
    result = repositories.poll(services, repository_id)
    assert result.planned == ("production",) and result.advanced == ("staging",)
    with services.database.session() as session:
        staging = session.scalars(select(Environment).where(Environment.name == "staging")).one()
        assert staging.synced_revision is not None and staging.synced_revision.sha == sha


def test_an_unreachable_remote_is_reported_and_changes_nothing(services: Services) -> None:
    repository_id = _register(services, closed_port_url())
    result = repositories.poll(services, repository_id)
    assert result.error and not result.moved and _queued(services) == []
    with services.database.session() as session:
        repository = session.get_one(Repository, repository_id)
        assert repository.poll_error and repository.head_sha is None


def test_a_deleted_branch_is_reported_and_the_last_head_kept(services: Services, tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE))
    head = commit_and_push(bare, {"README.md": "release\n"}, "cut a release", branch="release")
    repository_id = _register(services, str(bare), branch="release")
    repositories.poll(services, repository_id)
    delete_branch(bare, "release")
    result = repositories.poll(services, repository_id)
    assert result.error and "release" in result.error
    with services.database.session() as session:
        assert session.get_one(Repository, repository_id).head_sha == head


def test_a_force_push_is_reported_and_the_new_head_planned_once(services: Services, tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    base = make_bare_repo(bare, files_of(EXAMPLE))
    commit_and_push(bare, {"environments/staging.yaml": (EXAMPLE / "environments/staging.yaml").read_text()
                           + "# one\n"}, "one")
    repository_id = _register(services, str(bare))
    repositories.poll(services, repository_id)
    _mark_synced(services)
    rewritten = commit_and_push(bare, {"environments/staging.yaml": (EXAMPLE / "environments/staging.yaml")
                                       .read_text() + "# two\n"}, "two", parent=base)
    result = repositories.poll(services, repository_id)
    assert result.head == rewritten and "staging" in result.planned
    with services.database.session() as session:
        assert "force-pushed" in (session.get_one(Repository, repository_id).poll_error or "")
    _queued(services)
    again = repositories.poll(services, repository_id)  # nothing moved: the poll error is cleared, the record stays
    assert not again.moved and again.planned == () and _queued(services) == [], "no environment asked to sync again"
    with services.database.session() as session:
        assert session.get_one(Repository, repository_id).poll_error is None
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "repository.force_pushed")).all()
        assert [(e.target, e.details["head"]) for e in events] == [("infra", rewritten)]
        assert events[0].details["previous"] != rewritten


def test_every_poll_is_timed_into_the_repositorys_latency_histogram(services: Services, tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE))
    repository_id = _register(services, str(bare))
    repositories.poll(services, repository_id)  # moved: fetch and validation
    repositories.poll(services, repository_id)  # unmoved: one ls-remote
    (latency,) = pollstats.read(services.redis)
    assert (latency.repository, latency.count) == ("infra", 2)
    counts = [count for _bound, count in latency.cumulative]
    assert counts == sorted(counts) and counts[-1] <= 2, "buckets are cumulative"
    assert 0 < latency.total_seconds < 60 and counts[-1] == 2
    assert pollstats.counts(services.redis, ["infra", "never-polled"]) == {"infra": 2, "never-polled": 0}


def test_an_unmoved_poll_survives_another_process_writing_the_store_while_git_runs(
        services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pool processes poll at once: the other's commit lands while this one waits for `ls-remote`.
    A poll that read the row before git and wrote it after failed with "database is locked" (SQLite
    WAL refuses a stale reader's write at once) and was retried with backoff."""
    bare = tmp_path / "infra.git"
    head = make_bare_repo(bare, files_of(EXAMPLE))
    repository_id = _register(services, str(bare))
    with services.database.session() as session:
        other_id = repositories.register(services, session, name="other", url=str(bare)).id
    repositories.poll(services, repository_id)
    real = GitSource.remote_head

    def while_another_poll_commits(source: GitSource) -> str:
        other = Database(services.database.url)  # another process's connection
        try:
            with other.session(write=True) as session:
                session.get_one(Repository, other_id).last_polled_at = utcnow()
        finally:
            other.dispose()
        return real(source)

    monkeypatch.setattr(GitSource, "remote_head", while_another_poll_commits)
    before = utcnow()
    result = repositories.poll(services, repository_id)

    assert (result.head, result.moved, result.error) == (head, False, None)
    with services.database.session() as session:
        polled = session.get_one(Repository, repository_id).last_polled_at
    assert polled is not None and polled.replace(tzinfo=before.tzinfo) >= before


def test_after_an_invalid_revision_a_fix_to_one_environment_replans_every_environment_it_stranded(
        services: Services, tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE))
    repository_id = _register(services, str(bare))
    repositories.poll(services, repository_id)
    _mark_synced(services)
    good = (EXAMPLE / "environments/staging.yaml").read_text()
    commit_and_push(bare, {"environments/staging.yaml": good + "  workloads: [oops\n"}, "break staging")
    broken = repositories.poll(services, repository_id)
    assert set(broken.planned) == {"staging", "production"}  # every environment records why it cannot sync
    _queued(services)

    commit_and_push(bare, {"environments/staging.yaml": good}, "fix staging")
    result = repositories.poll(services, repository_id)

    assert set(result.planned) == {"staging", "production"}  # production was left wanting the invalid one
