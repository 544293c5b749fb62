"""The reconciler's services over a real SQLite store and a real Redis, with a queue that records
what would be sent to the broker (the tests here are about the rules, not about Celery)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.access import Principal, principal_of
from reconciler.runtime import Services
from store import Database, Environment, Group, GroupMember, Repository, Revision, Role, RoleBinding, SecretBox, User
from tests.support.doubles import NoTargets, RecordingQueue
from tests.support.git_server import FileContent, WorkClone, files_of, git
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis, redis_client


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def services(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Services]:
    client = redis_client(redis_server.client_url)
    client.flushall()
    database = Database.embedded(tmp_path / "data")
    database.upgrade()
    yield Services(database=database, secrets=SecretBox(SecretBox.generate_key()), redis=client,
                   targets=NoTargets(), data_dir=tmp_path / "data", queue=RecordingQueue())
    database.dispose()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"


def add_people(session: Session, group: str, *names: str) -> None:
    """Users in a group (the example's production names `group:platform-leads` as its approvers), the
    group bound to the approver role everywhere (approving needs the permission as well as the policy)."""
    row = Group(name=group)
    users = [User(name=name) for name in names]
    session.add_all([row, *users, RoleBinding(subject=f"group:{group}", role=Role.APPROVER, scope="*")])
    session.flush()
    session.add_all([GroupMember(group_id=row.id, user_id=user.id) for user in users])


def principal(services: Services, name: str) -> Principal:
    """The stored user `name` as the approval decision sees them (groups, grants, host ids)."""
    with services.database.session() as session:
        user = session.scalars(select(User).where(User.name == name)).one()
        return principal_of(session, user, "local")


def make_repo_by(path: Path, files: Mapping[str, FileContent], author: str, message: str = "change") -> str:
    """A bare repo whose `main` holds one commit with `files`, authored and committed by `author`."""
    name, _, email = author.partition(" <")
    identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"),
                "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    with tempfile.TemporaryDirectory(prefix="work-") as scratch:
        clone = WorkClone(path, Path(scratch) / "work")
        clone.write(files)
        git("add", "--all", cwd=clone.path)
        git("commit", "--quiet", "-m", message, cwd=clone.path, env=identity)
        clone.push()
        return clone.head()


@pytest.fixture
def environment(services: Services, tmp_path: Path) -> tuple[int, int]:
    """(environment id, revision id): the example's production, registered from a real git repo at one
    revision written by Alice; Alice, Bob and Carol are platform leads (production's approvers)."""
    bare = tmp_path / "infra.git"
    head = make_repo_by(bare, files_of(EXAMPLE), "Alice Author <alice@example.com>")
    with services.database.session() as session:
        repository = Repository(name="infra", url=str(bare), branch="main")
        session.add(repository)
        session.flush()
        revision = Revision(repository_id=repository.id, ref="main", sha=head,
                            author="Alice Author <alice@example.com>", message="change",
                            committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        env = Environment(repository_id=repository.id, name="production")
        session.add_all([revision, env])
        add_people(session, "platform-leads", "alice", "bob", "carol")
        session.flush()
        return env.id, revision.id
