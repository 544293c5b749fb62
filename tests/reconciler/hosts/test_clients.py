"""The three host clients against the recording fake host: documented paths, headers and bodies only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.hosts import (
    COMMENT_MARKER,
    CommitStatus,
    GiteaClient,
    GitHostClient,
    GitHubClient,
    GitLabClient,
    HostError,
    HostUser,
    ReviewState,
)
from store import GitHost, PreviewStatus
from tests.support.git_host import GitHostServer, git_host_server

HEAD = "a" * 40
OLD = "b" * 40
MERGED = "c" * 40
TOKEN = "s3cret-host-token"
HOSTS = [pytest.param(host, id=host.value) for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA)]
CLIENTS: dict[GitHost, type[GitHubClient | GitLabClient | GiteaClient]] = {
    GitHost.GITHUB: GitHubClient, GitHost.GITLAB: GitLabClient, GitHost.GITEA: GiteaClient}


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> Iterator[GitHostServer]:
    with git_host_server(request.param, "acme/infra", TOKEN) as server:
        server.add_pull(7, author="alice", head_sha=HEAD)
        yield server
        assert server.problems == []


def client_of(server: GitHostServer, token: str = TOKEN) -> GitHostClient:
    return CLIENTS[server.host](server.api_url, "acme/infra", token)


@pytest.mark.parametrize("state", list(PreviewStatus), ids=[s.value for s in PreviewStatus])
def test_a_commit_status_is_posted_in_the_host_own_words_with_the_preview_link(host: GitHostServer,
                                                                               state: PreviewStatus) -> None:
    client_of(host).set_status(HEAD, CommitStatus(state=state, description="planned " * 40,
                                                  target_url="https://tidegate.test/previews/1"))

    [status] = host.statuses[HEAD]
    gitlab_words = {PreviewStatus.FAILURE: "failed", PreviewStatus.ERROR: "failed"}
    expected = gitlab_words.get(state, state.value) if host.host is GitHost.GITLAB else state.value
    assert status["state"] == expected
    assert status["target_url"] == "https://tidegate.test/previews/1"
    assert status.get("context", status.get("name")) == "tidegate/preview"


def test_the_first_upsert_creates_the_one_comment_and_the_next_edits_it_in_place(host: GitHostServer) -> None:
    client = client_of(host)

    first = client.upsert_comment(7, "plan one")
    second = client.upsert_comment(7, "plan two", first)

    assert first == second
    assert host.comment_bodies(7) == [f"{COMMENT_MARKER}\nplan two"]


def test_without_its_id_the_comment_is_found_by_its_marker_among_many_pages(host: GitHostServer) -> None:
    for index in range(150):
        host.add_comment(7, f"looks good {index}", user="bob")
    known = client_of(host).upsert_comment(7, "plan one")
    for index in range(60):
        host.add_comment(7, f"more chatter {index}", user="bob")

    again = client_of(host).upsert_comment(7, "plan two")

    assert again == known
    assert [body for body in host.comment_bodies(7) if body.startswith(COMMENT_MARKER)] == [
        f"{COMMENT_MARKER}\nplan two"]


def test_a_comment_deleted_on_the_host_is_created_again(host: GitHostServer) -> None:
    client = client_of(host)
    first = client.upsert_comment(7, "plan one")
    host.comments[7].clear()

    again = client.upsert_comment(7, "plan two", first)

    assert again != first and host.comment_bodies(7) == [f"{COMMENT_MARKER}\nplan two"]
    host.problems.clear()  # the 404 on editing the deleted comment was expected


def test_a_pull_request_is_read_with_its_author_head_and_merge_commit(host: GitHostServer) -> None:
    host.add_pull(8, author="carol", head_sha=HEAD, merged=True, state="closed", merge_sha=MERGED)

    open_pr, merged_pr = client_of(host).pull_request(7), client_of(host).pull_request(8)

    assert (open_pr.author, open_pr.head_sha, open_pr.base_ref, open_pr.merged, open_pr.state) == (
        "alice", HEAD, "main", False, "open")
    assert (merged_pr.author, merged_pr.merged, merged_pr.state, merged_pr.merge_sha) == ("carol", True, "merged",
                                                                                         MERGED)


def test_reviews_are_read_in_tidegate_words_with_the_commit_they_reviewed(host: GitHostServer) -> None:
    changes = "REQUEST_CHANGES" if host.host is GitHost.GITEA else "CHANGES_REQUESTED"
    host.add_review(7, "bob", "APPROVED", HEAD)
    host.add_review(7, "dave", changes, HEAD)
    host.add_review(7, "erin", "APPROVED", OLD)

    reviews = {(r.user, r.state, r.commit_sha) for r in client_of(host).reviews(7)}

    if host.host is GitHost.GITLAB:  # GitLab lists current approvers only, on the MR's head
        assert reviews == {("bob", ReviewState.APPROVED, HEAD), ("erin", ReviewState.APPROVED, HEAD)}
    elif host.host is GitHost.GITEA:  # Gitea marks a review of an older push stale
        assert reviews == {("bob", ReviewState.APPROVED, HEAD), ("dave", ReviewState.CHANGES_REQUESTED, HEAD),
                           ("erin", ReviewState.DISMISSED, OLD)}
    else:
        assert reviews == {("bob", ReviewState.APPROVED, HEAD), ("dave", ReviewState.CHANGES_REQUESTED, HEAD),
                           ("erin", ReviewState.APPROVED, OLD)}


def test_authors_and_reviewers_come_with_their_stable_account_ids(host: GitHostServer) -> None:
    host.add_review(7, "bob", "APPROVED", HEAD)

    pr, [review] = client_of(host).pull_request(7), client_of(host).reviews(7)

    assert pr.author_id == str(host.id_of("alice")) and review.user_id == str(host.id_of("bob"))


@pytest.mark.parametrize("permission,trusted", [
    pytest.param("admin", True, id="admin"), pytest.param("write", True, id="write"),
    pytest.param("maintain", True, id="maintain"), pytest.param("read", False, id="read"),
    pytest.param(None, False, id="no-collaborator"),
])
def test_who_may_push_is_asked_of_the_host_by_account(host: GitHostServer, permission: str | None,
                                                      trusted: bool) -> None:
    if permission is not None:
        host.add_collaborator("pat", permission)

    answer = client_of(host).can_push(HostUser(login="pat", id=str(host.id_of("pat"))))

    assert answer is trusted
    asked = host.calls_to("GET", r"/members/all/\d+$" if host.host is GitHost.GITLAB
                          else r"/collaborators/pat/permission$")
    assert len(asked) == 1


def test_a_login_that_now_belongs_to_another_account_is_not_trusted(host: GitHostServer) -> None:
    host.add_collaborator("pat", "write")

    assert not client_of(host).can_push(HostUser(login="pat", id="999999"))


def test_commit_authors_are_resolved_to_accounts_where_the_host_can(host: GitHostServer) -> None:
    host.commit_accounts[HEAD] = ("alice", "bob")

    accounts, unclaimed = client_of(host).commit_accounts(HEAD), client_of(host).commit_accounts(OLD)

    if host.host is GitHost.GITLAB:  # GitLab names commit authors by e-mail only: nothing to resolve
        assert accounts.author is None and host.calls_to("GET", "/commits") == []
    else:
        assert accounts.author == HostUser(login="alice", id=str(host.id_of("alice")))
        assert accounts.committer == HostUser(login="bob", id=str(host.id_of("bob")))
        assert unclaimed.author is None and unclaimed.committer is None


def test_a_refused_token_raises_a_host_error_that_does_not_repeat_the_token(host: GitHostServer) -> None:
    with pytest.raises(HostError) as refused:
        client_of(host, token="wrong-token").set_status(HEAD, CommitStatus(state=PreviewStatus.PENDING,
                                                                           description="x"))

    assert "401" in str(refused.value) and "wrong-token" not in str(refused.value)
    assert host.statuses == {}
    host.problems.clear()
