"""Planning a pull request runs its code, so an outsider's head is not planned until a member says
so for exactly that head: forks and authors the host does not let push wait for a member's
`/tidegate preview`, and every new push needs a new go-ahead."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler import previews
from store import GitHost, Preview, PreviewStatus
from tests.security.approval_support import Stack, account, pull_request_payload, stack
from tests.support.git_host import GitHostServer, git_host_server
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

MALLORY = "Mallory Outsider <mallory@example.net>"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass
class PullRequests:
    world: Stack
    host: GitHostServer
    base: str

    def open(self, author: str, *, fork: str | None, action: str = "opened", message: str = "Tune production",
             note: str = "tuned") -> tuple[str, previews.PreviewOutcome]:
        """`author` pushes a head to PR #7 and GitHub tells Tidegate; a worker runs the preview it queued."""
        head = self.world.commit(message, {"apps/web/overlays/production/NOTES.md": note + "\n"}, author=MALLORY,
                                 branch="feature")
        if 7 not in self.host.pulls:
            self.host.add_pull(7, author=author, head_sha=head, fork=fork)
        self.host.pulls[7].head_sha = head
        answer = self.world.deliver("pull_request", pull_request_payload(self.host, action, 7, author, head,
                                                                         fork=fork, base=self.base))
        assert answer.status_code == 202, answer.text
        [request] = self.world.queue.take("preview")
        return head, previews.run(self.world.services, request)

    def comment(self, commenter: str, body: str) -> list[Any]:
        """`commenter` comments on PR #7; the go-ahead jobs the receiver queued are run."""
        answer = self.world.deliver("issue_comment", {
            "action": "created", "issue": {"number": 7, "pull_request": {"url": "https://x/pulls/7"}},
            "comment": {"id": 1, "body": body, "user": account(self.host, commenter)},
            "sender": account(self.host, commenter)})
        assert answer.status_code == 202, answer.text
        return [previews.go_ahead(self.world.services, job) for job in self.world.queue.take("go_ahead")]

    def planned(self, head: str) -> bool:
        return any(revision == head for revision, _ in self.world.live.planned)

    def row(self) -> Preview:
        with self.world.services.database.session() as session:
            row = session.query(Preview).filter_by(number=7).one()
            session.expunge(row)
            return row


@pytest.fixture
def prs(tmp_path: Path, redis: EmbeddedRedis) -> Iterator[PullRequests]:
    with git_host_server(GitHost.GITHUB, "acme/infra", token="host-token") as host, \
            stack(tmp_path, redis, host) as world:
        base = world.bootstrap()
        host.add_collaborator("pat-gh", "write")
        host.add_collaborator("rita-gh", "read")
        world.live.planned.clear()
        world.live.untrusted.clear()
        yield PullRequests(world, host, base)
        assert host.problems == [], host.problems


@pytest.mark.parametrize("author,fork", [
    pytest.param("mallory-gh", "mallory-gh/infra", id="an-outsiders-fork"),
    pytest.param("rita-gh", None, id="a-read-only-collaborator"),
    pytest.param("pat-gh", "pat-gh/infra", id="even-a-members-fork"),
])
def test_an_untrusted_head_is_not_planned_and_says_it_waits(prs: PullRequests, author: str, fork: str | None) -> None:
    head, outcome = prs.open(author, fork=fork)

    assert not prs.planned(head), "nothing of the pull request may run"
    assert outcome.status is PreviewStatus.PENDING and outcome.held
    assert prs.host.status_states(head) == ["pending"]
    assert f"/tidegate preview {head[:12]}" in prs.host.statuses[head][-1]["description"]
    [comment] = prs.host.comment_bodies(7)
    assert "waits" in comment and f"/tidegate preview {head[:12]}" in comment
    row = prs.row()
    assert row.held and row.environments == {} and row.status is PreviewStatus.PENDING


def test_a_members_go_ahead_for_that_head_lets_it_be_planned(prs: PullRequests) -> None:
    head, _ = prs.open("mallory-gh", fork="mallory-gh/infra")

    [result] = prs.comment("pat-gh", f"Looks harmless.\n/tidegate preview {head[:12]}\n")

    assert result.accepted and result.preview is not None, result
    assert result.preview.status is PreviewStatus.SUCCESS and "production" in result.preview.environments
    assert prs.planned(head)
    assert prs.host.status_states(head) == ["pending", "pending", "success"]
    assert (prs.row().go_ahead_sha, prs.row().go_ahead_by, prs.row().held) == (head, "pat-gh", None)
    assert prs.world.live.untrusted and all(prs.world.live.untrusted), "its author is still not trusted"


@pytest.mark.parametrize("commenter", [pytest.param("mallory-gh", id="the-outsider-herself"),
                                       pytest.param("rita-gh", id="a-read-only-collaborator")])
def test_a_go_ahead_from_someone_who_cannot_push_is_not_honoured(prs: PullRequests, commenter: str) -> None:
    head, _ = prs.open("mallory-gh", fork="mallory-gh/infra")

    [result] = prs.comment(commenter, "/tidegate preview")

    assert not result.accepted and "cannot push" in result.reason
    assert not prs.planned(head) and prs.row().held


def test_a_new_push_needs_a_new_go_ahead(prs: PullRequests) -> None:
    first, _ = prs.open("mallory-gh", fork="mallory-gh/infra")
    [allowed] = prs.comment("pat-gh", f"/tidegate preview {first}")
    assert allowed.accepted and prs.planned(first)

    second, outcome = prs.open("mallory-gh", fork="mallory-gh/infra", action="synchronize",
                               message="Now read the secret key", note="sneaky")

    assert outcome.held and not prs.planned(second), "the go-ahead was for the previous head"
    [stale] = prs.comment("pat-gh", f"/tidegate preview {first[:12]}")
    assert not stale.accepted and "new push needs a new go-ahead" in stale.reason
    assert not prs.planned(second)


def test_a_member_who_can_push_has_their_pull_request_planned_at_once(prs: PullRequests) -> None:
    head, outcome = prs.open("pat-gh", fork=None)

    assert outcome.status is PreviewStatus.SUCCESS and outcome.held is None and prs.planned(head)
    assert prs.world.live.untrusted and not any(prs.world.live.untrusted)


def test_comments_that_are_not_a_go_ahead_change_nothing(prs: PullRequests) -> None:
    head, _ = prs.open("mallory-gh", fork="mallory-gh/infra")

    assert prs.comment("pat-gh", "please run `/tidegate preview` when you can") == []
    assert prs.comment("pat-gh", "/tidegate preview-all") == []
    assert not prs.planned(head)
