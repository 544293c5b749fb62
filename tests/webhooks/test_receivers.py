"""The receivers: signed deliveries enqueue exactly one job; forged, replayed, malformed, oversize and
unknown ones change nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from reconciler.hosts.approvals import RecountRequest
from reconciler.previews import GoAheadRequest, PreviewRequest
from store import CommitIdentity, GitHost
from tests.webhooks.conftest import DEFAULT_SECRET, REPO_SECRET, Hooks
from tests.webhooks.deliveries import (
    ALICE_ID,
    BOB_ID,
    HEAD,
    MERGE,
    MERGE_ACTION,
    OCTOCAT_ID,
    PREVIEW_ACTIONS,
    Delivery,
    comment,
    pull_request,
    push,
    review,
    sign,
)
from webhooks.receiver import MAX_BODY

HOSTS = [pytest.param(host, id=host.value) for host in GitHost]
PR_HOSTS = [pytest.param(host, id=host.value) for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA)]


def send(hooks: Hooks, delivery: Delivery) -> tuple[int, dict[str, object]]:
    response = hooks.client.post(delivery.path, content=delivery.body, headers=delivery.headers)
    return response.status_code, response.json()


def signed_push(host: GitHost, secret: str = DEFAULT_SECRET, delivery: str | None = None) -> Delivery:
    event, payload = push(host)
    return sign(host, event, payload, secret, delivery)


@pytest.mark.parametrize("host", HOSTS)
def test_a_signed_push_to_the_tracked_branch_polls_the_repository_exactly_once(hooks: Hooks, host: GitHost) -> None:
    status, answer = send(hooks, signed_push(host))

    assert (status, answer["outcome"]) == (202, "accepted")
    assert hooks.jobs.jobs == [("poll", hooks.repository_id)]
    assert hooks.deliveries() == 1


FORGERIES = {"wrong-secret": "signed-with-another-secret", "tampered-body": "body-changed-after-signing",
             "no-signature": "unsigned"}


@pytest.mark.parametrize("host,forgery", [
    pytest.param(host, forgery, id=f"{host.value}-{name}") for host in GitHost for forgery, name in FORGERIES.items()
    if not (host is GitHost.GITLAB and forgery == "tampered-body")  # GitLab sends a token, it signs no body
])
def test_a_forged_delivery_is_refused_with_401_and_changes_nothing(hooks: Hooks, host: GitHost,
                                                                   forgery: str) -> None:
    delivery = signed_push(host, secret="guessed" if forgery == "wrong-secret" else DEFAULT_SECRET)
    if forgery == "tampered-body":
        delivery.body = delivery.body.replace(b"refs/heads/main", b"refs/heads/mainx")
    if forgery == "no-signature":
        delivery.headers = {k: v for k, v in delivery.headers.items()
                            if k not in ("X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature",
                                         "X-Tidegate-Signature")}

    status, answer = send(hooks, delivery)

    assert (status, answer["outcome"]) == (401, "refused")
    assert hooks.jobs.jobs == [] and hooks.deliveries() == 0


@pytest.mark.parametrize("host", HOSTS)
def test_a_replayed_delivery_is_acknowledged_but_enqueues_nothing(hooks: Hooks, host: GitHost) -> None:
    delivery = signed_push(host, delivery="d-42")
    first, _ = send(hooks, delivery)

    again, answer = send(hooks, delivery)

    assert (first, again, answer["outcome"]) == (202, 200, "replayed")
    assert hooks.jobs.jobs == [("poll", hooks.repository_id)]


def test_a_gitlab_delivery_without_an_event_uuid_is_recognised_by_its_body(hooks: Hooks) -> None:
    delivery = signed_push(GitHost.GITLAB)
    del delivery.headers["X-Gitlab-Event-UUID"]
    send(hooks, delivery)

    status, answer = send(hooks, delivery)

    assert (status, answer["outcome"]) == (200, "replayed") and len(hooks.jobs.jobs) == 1


def test_the_repository_own_secret_replaces_the_default(hooks_with_own_secret: Hooks) -> None:
    with_default, _ = send(hooks_with_own_secret, signed_push(GitHost.GITHUB, DEFAULT_SECRET))
    with_own, _ = send(hooks_with_own_secret, signed_push(GitHost.GITHUB, REPO_SECRET))

    assert (with_default, with_own) == (401, 202)
    assert hooks_with_own_secret.jobs.jobs == [("poll", hooks_with_own_secret.repository_id)]


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="broken-json"),
    pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    pytest.param(b"[]", id="a-list-not-an-object"),
    pytest.param(json.dumps({"ref": "refs/heads/main"}).encode(), id="no-repository"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
])
def test_a_malformed_body_is_400_and_changes_nothing(hooks: Hooks, body: bytes) -> None:
    status, answer = send(hooks, sign(GitHost.GITHUB, "push", None, DEFAULT_SECRET, body=body))

    assert (status, answer["outcome"]) == (400, "refused")
    assert hooks.jobs.jobs == [] and hooks.deliveries() == 0


def test_a_body_declared_larger_than_the_cap_is_413_before_it_is_read(hooks: Hooks) -> None:
    delivery = signed_push(GitHost.GITHUB)
    headers = {**delivery.headers, "Content-Length": str(MAX_BODY + 1)}

    response = hooks.client.post(delivery.path, content=delivery.body, headers=headers)

    assert response.status_code == 413 and hooks.jobs.jobs == []


def test_a_streamed_body_past_the_cap_is_413(hooks: Hooks) -> None:
    delivery = signed_push(GitHost.GITHUB)

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    response = hooks.client.post(delivery.path, content=chunks(), headers=delivery.headers)

    assert response.status_code == 413 and hooks.jobs.jobs == [] and hooks.deliveries() == 0


@pytest.mark.parametrize("host", HOSTS)
def test_an_event_tidegate_does_not_act_on_is_202_and_ignored(hooks: Hooks, host: GitHost) -> None:
    _, payload = push(host)
    status, answer = send(hooks, sign(host, "star" if host is not GitHost.GITLAB else "Note Hook", payload,
                                      DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []


def test_a_push_to_a_branch_the_repository_does_not_track_is_ignored(hooks: Hooks) -> None:
    event, payload = push(GitHost.GITHUB, ref="refs/heads/feature")

    status, answer = send(hooks, sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []


def test_a_delivery_about_an_unregistered_repository_is_ignored_when_signed_and_refused_when_not(
        hooks: Hooks) -> None:
    event, payload = push(GitHost.GITHUB)
    payload["repository"] = {"full_name": "someone/else", "clone_url": "https://git.example.test/someone/else.git"}

    signed, _ = send(hooks, sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET))
    forged, _ = send(hooks, sign(GitHost.GITHUB, event, payload, "guessed"))

    assert (signed, forged) == (202, 401) and hooks.jobs.jobs == []


@pytest.mark.parametrize("url", [
    pytest.param("git@git.example.test:acme/infra.git", id="ssh-scp-form"),
    pytest.param("ssh://git@git.example.test/acme/infra", id="ssh-url"),
    pytest.param("HTTPS://git.example.test/acme/infra/", id="https-other-spelling"),
])
def test_a_repository_is_matched_by_its_clone_url_in_any_spelling(hooks: Hooks, url: str) -> None:
    event, payload = push(GitHost.GITEA)
    payload["repository"] = {"full_name": "not/registered", "clone_url": url}

    status, _ = send(hooks, sign(GitHost.GITEA, event, payload, DEFAULT_SECRET))

    assert status == 202 and hooks.jobs.jobs == [("poll", hooks.repository_id)]


@pytest.mark.parametrize("host,action", [pytest.param(host, action, id=f"{host.value}-{action}")
                                         for host, actions in PREVIEW_ACTIONS.items() for action in actions])
def test_an_opened_or_updated_pull_request_enqueues_one_preview_of_its_head(hooks: Hooks, host: GitHost,
                                                                             action: str) -> None:
    event, payload = pull_request(host, action)

    status, answer = send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "accepted")
    [(kind, request)] = hooks.jobs.jobs
    assert kind == "preview" and isinstance(request, PreviewRequest)
    assert (request.repository_id, request.number, request.head_sha, request.base_ref) == (
        hooks.repository_id, 7, HEAD, "main")
    assert request.public_url == "https://tidegate.example.test"


@pytest.mark.parametrize("host", PR_HOSTS)
def test_a_merged_pull_request_polls_the_repository_and_recounts_the_reviews_given_before(hooks: Hooks,
                                                                                          host: GitHost) -> None:
    event, payload = pull_request(host, MERGE_ACTION[host], merged=True)

    status, _ = send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    assert status == 202 and [kind for kind, _ in hooks.jobs.jobs] == ["poll", "recount"]
    assert hooks.jobs.jobs[0] == ("poll", hooks.repository_id)
    assert hooks.jobs.jobs[1][1] == RecountRequest(repository_id=hooks.repository_id, number=7)


def test_a_pull_request_closed_without_merging_is_ignored(hooks: Hooks) -> None:
    event, payload = pull_request(GitHost.GITHUB, "closed", merged=False)

    status, answer = send(hooks, sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []


def test_a_pull_request_into_another_branch_is_not_previewed(hooks: Hooks) -> None:
    event, payload = pull_request(GitHost.GITHUB, "opened", base_ref="release")

    status, answer = send(hooks, sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []


@pytest.mark.parametrize("host", PR_HOSTS)
def test_an_approving_review_enqueues_an_approvals_recount(hooks: Hooks, host: GitHost) -> None:
    event, payload = review(host)

    status, _ = send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    [(kind, request)] = hooks.jobs.jobs
    assert status == 202 and kind == "recount"
    assert (request.repository_id, request.number) == (hooks.repository_id, 7)  # type: ignore[attr-defined]


def test_a_review_that_only_comments_is_ignored(hooks: Hooks) -> None:
    event, payload = review(GitHost.GITHUB, state="commented")

    status, answer = send(hooks, sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []


def test_the_answer_comes_within_milliseconds(hooks: Hooks) -> None:
    timings = []
    for n in range(30):
        event, payload = push(GitHost.GITHUB)
        payload["after"] = f"{n:040x}"  # thirty pushes, not one body thirty times (that is a replay)
        delivery = sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET)
        started = time.perf_counter()
        status, _ = send(hooks, delivery)
        timings.append(time.perf_counter() - started)
        assert status == 202
    timings.sort()
    assert timings[len(timings) // 2] < 0.05, timings


# -- who the host vouches for, and a member's go-ahead ----------------------------------------------------


def _identities(hooks: Hooks) -> list[tuple[str, str, str, str]]:
    with hooks.services.database.session() as session:
        return sorted((row.sha, row.source, row.user_id, row.login) for row in session.scalars(select(CommitIdentity)))


@pytest.mark.parametrize("host", PR_HOSTS)
def test_a_signed_push_remembers_its_sender_for_every_commit_it_brought(hooks: Hooks, host: GitHost) -> None:
    status, _ = send(hooks, signed_push(host))

    assert status == 202
    pushed = [HEAD] if host is GitHost.GITLAB else ["4" * 40, HEAD]
    assert _identities(hooks) == sorted((sha, "push_sender", str(OCTOCAT_ID), "octocat") for sha in pushed)


def test_a_forged_or_replayed_push_remembers_nobody(hooks: Hooks) -> None:
    delivery = signed_push(GitHost.GITHUB)
    forged = Delivery(delivery.host, delivery.headers, delivery.body.replace(b"octocat", b"mallory"))
    assert send(hooks, forged)[0] == 401 and _identities(hooks) == []
    assert send(hooks, delivery)[0] == 202
    assert send(hooks, delivery)[0] == 200
    assert len(_identities(hooks)) == 2


@pytest.mark.parametrize("host", PR_HOSTS)
def test_a_merged_pull_request_remembers_its_author_for_its_head_and_merge_commit(hooks: Hooks,
                                                                                  host: GitHost) -> None:
    event, payload = pull_request(host, MERGE_ACTION[host], merged=True)

    send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    assert _identities(hooks) == sorted((sha, "pr_author", str(ALICE_ID), "" if host is GitHost.GITLAB else "alice")
                                        for sha in (HEAD, MERGE))


@pytest.mark.parametrize("host,fork", [pytest.param(host, fork, id=f"{host.value}-{'fork' if fork else 'same-repo'}")
                                       for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA)
                                       for fork in (False, True)])
def test_a_preview_request_says_who_opened_the_pull_request_and_whether_it_comes_from_a_fork(
        hooks: Hooks, host: GitHost, fork: bool) -> None:
    event, payload = pull_request(host, PREVIEW_ACTIONS[host][0], fork=fork)

    send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    [(_, request)] = hooks.jobs.jobs
    assert isinstance(request, PreviewRequest)
    assert (request.author_id, request.fork) == (str(ALICE_ID), fork)


@pytest.mark.parametrize("host,body,sha", [
    pytest.param(host, body, sha, id=f"{host.value}-{name}") for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA)
    for name, body, sha in (("bare", "/tidegate preview", HEAD if host is GitHost.GITLAB else None),
                            ("naming-a-sha", "Looked at it.\n  /tidegate preview ABCDEF1234  \n", "abcdef1234"))
])
def test_a_tidegate_preview_comment_enqueues_a_go_ahead_for_the_head_it_names(hooks: Hooks, host: GitHost, body: str,
                                                                             sha: str | None) -> None:
    event, payload = comment(host, body)

    status, answer = send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "accepted")
    [(kind, request)] = hooks.jobs.jobs
    assert kind == "go_ahead" and isinstance(request, GoAheadRequest)
    assert (request.number, request.commenter, request.commenter_id, request.sha) == (7, "bob", str(BOB_ID), sha)


@pytest.mark.parametrize("host,body,on_pull_request,action", [
    pytest.param(GitHost.GITHUB, "please run `/tidegate preview`", True, "created", id="quoted-in-a-sentence"),
    pytest.param(GitHost.GITHUB, "/tidegate preview", False, "created", id="on-an-issue"),
    pytest.param(GitHost.GITHUB, "/tidegate preview", True, "edited", id="an-edit"),
    pytest.param(GitHost.GITEA, "/tidegate previewing", True, "created", id="another-word"),
    pytest.param(GitHost.GITLAB, "/tidegate preview", False, "created", id="gitlab-note-on-an-issue"),
])
def test_comments_that_are_no_go_ahead_are_ignored(hooks: Hooks, host: GitHost, body: str, on_pull_request: bool,
                                                   action: str) -> None:
    event, payload = comment(host, body, on_pull_request=on_pull_request, action=action)

    status, answer = send(hooks, sign(host, event, payload, DEFAULT_SECRET))

    assert (status, answer["outcome"]) == (202, "ignored") and hooks.jobs.jobs == []
