"""GitSource against real repositories over file://, git daemon and smart HTTP."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.sources import git as git_module
from reconciler.sources.git import (
    AuthenticationFailed,
    BranchMissing,
    GitAuth,
    GitSource,
    SourceUnreachable,
    UnknownRevision,
    git_environment,
    prune_checkouts,
)
from tests.reconciler.sources.origins import FILES, TOKEN, Origin, SourceFactory
from tests.support.git_server import (
    closed_port_url,
    commit_and_push,
    delete_branch,
    git,
    git_http_server,
    make_bare_repo,
)

ROOT = Path(__file__).resolve().parents[3]


class CountingSource(GitSource):
    """A real GitSource that counts the fetches it makes."""

    fetches = 0

    def fetch(self, want: str | None = None) -> None:
        self.fetches += 1
        super().fetch(want)


def test_remote_head_reads_the_branch_without_fetching(any_origin: Origin, source_for: SourceFactory) -> None:
    source = source_for(any_origin)

    assert source.remote_head() == any_origin.first
    assert not source.mirror.exists()


def test_ls_remote_over_git_daemon_speaks_protocol_v0_and_other_transports_gits_default(
    any_origin: Origin, source_for: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protocol v2 over git:// stalls ~40 ms a call (its small request packets wait for a delayed ACK):
    a poll of an unchanged head costs 50 ms instead of ~10 (bench/reconcile/bench_polls.py)."""
    calls: list[list[str]] = []
    real = git_module._execute

    def recording(argv: list[str], env: dict[str, str], timeout: float) -> Any:
        calls.append(argv)
        return real(argv, env, timeout)

    monkeypatch.setattr(git_module, "_execute", recording)
    assert source_for(any_origin).remote_head() == any_origin.first

    (argv,) = calls
    options = argv[:argv.index("ls-remote")]
    assert (options[-2:] == ["-c", "protocol.version=0"]) is any_origin.url.startswith("git://")


def test_a_plain_local_path_works_like_a_file_url(origin: Origin, cache: Path) -> None:
    source = GitSource(str(origin.path), cache / "git" / "plain.git")

    assert source.refresh() == origin.first
    assert source.commit(origin.first).summary == "Initial commit"


def test_fetched_mirror_answers_commit_questions_over_every_transport(
    any_origin: Origin, source_for: SourceFactory
) -> None:
    source = source_for(any_origin)
    source.fetch()
    second = commit_and_push(any_origin.push_url, {"apps/web/deployment.yaml": "replicas: 2\n"}, "Scale web")

    assert source.refresh() == second
    assert source.changed_paths(any_origin.first, second) == ["apps/web/deployment.yaml"]


def test_refresh_fetches_only_when_the_remote_head_moved(origin: Origin, cache: Path) -> None:
    source = CountingSource(origin.url, cache / "git" / "config.git")

    heads = [source.refresh(), source.refresh(), source.refresh()]
    assert source.fetches == 1
    moved = commit_and_push(origin.path, {"README.md": "# moved\n"}, "Move")
    heads += [source.refresh(), source.refresh()]

    assert heads == [origin.first] * 3 + [moved] * 2
    assert source.fetches == 2


def test_a_second_fetch_waiting_on_the_lock_skips_when_the_commit_arrived(
    origin: Origin, source_for: SourceFactory
) -> None:
    source = source_for(origin)
    source.fetch()
    fetch_head = source.mirror / "FETCH_HEAD"
    before = fetch_head.stat().st_mtime_ns if fetch_head.exists() else None

    source.fetch(want=origin.first)

    assert (fetch_head.stat().st_mtime_ns if fetch_head.exists() else None) == before


def test_two_processes_fetching_at_once_leave_one_good_mirror(origin: Origin, cache: Path) -> None:
    mirror = cache / "git" / "shared.git"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from reconciler.sources.git import GitSource
        source = GitSource({origin.url!r}, Path({str(mirror)!r}))
        source.fetch()
        print(source.commit({origin.first!r}).summary)
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=60)[0].strip() for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0]
    assert outputs == ["Initial commit", "Initial commit"]
    assert sorted(path.name for path in mirror.parent.iterdir()) == ["shared.git", "shared.git.lock"]


def test_commit_describes_author_messages_and_utc_time(origin: Origin, source_for: SourceFactory) -> None:
    sha = commit_and_push(origin.path, {"README.md": "# two\n"}, "Raise replicas\n\nBecause traffic doubled.")
    source = source_for(origin)
    source.fetch()

    info = source.commit(sha[:10])

    assert (info.sha, info.author, info.summary) == (sha, "Test Author <author@example.test>", "Raise replicas")
    assert info.message == "Raise replicas\n\nBecause traffic doubled."
    assert info.committed_at.tzinfo == UTC
    assert abs(datetime.now(UTC) - info.committed_at) < timedelta(minutes=5)


@pytest.mark.parametrize(
    "revision",
    ["0" * 40, "not-a-sha", "--output=/tmp/x", "HEAD"],
    ids=["absent-commit", "garbage", "option-injection", "symbolic-name"],
)
def test_unknown_revisions_are_refused(origin: Origin, source_for: SourceFactory, revision: str) -> None:
    source = source_for(origin)
    source.fetch()

    with pytest.raises(UnknownRevision):
        source.commit(revision)


def test_questions_before_the_first_fetch_say_so(origin: Origin, source_for: SourceFactory) -> None:
    with pytest.raises(UnknownRevision, match="not been fetched"):
        source_for(origin).commit(origin.first)


def test_changed_paths_lists_edits_additions_deletions_and_both_sides_of_a_rename(
    origin: Origin, source_for: SourceFactory
) -> None:
    second = commit_and_push(origin.path, {
        "apps/web/deployment.yaml": "replicas: 3\n",
        "apps/web/service.yaml": None,
        "apps/web/svc.yaml": FILES["apps/web/service.yaml"],
        "apps/api/new file.yaml": "kind: New\n",
        "README.md": None,
    }, "Rework")
    source = source_for(origin)
    source.fetch()

    assert source.changed_paths(origin.first, second) == [
        "README.md", "apps/api/new file.yaml", "apps/web/deployment.yaml", "apps/web/service.yaml", "apps/web/svc.yaml",
    ]
    assert source.changed_paths(second, second) == []


def test_force_push_is_reported_through_is_ancestor(origin: Origin, source_for: SourceFactory) -> None:
    second = commit_and_push(origin.path, {"README.md": "# second\n"}, "Second")
    source = source_for(origin)
    synced = source.refresh()
    rewritten = commit_and_push(origin.path, {"README.md": "# rewritten\n"}, "Rewritten", parent=origin.first)

    assert source.refresh() == rewritten
    assert source.is_ancestor(origin.first, synced)
    assert not source.is_ancestor(synced, rewritten)
    assert source.commit(second).sha == second  # the rewritten-away commit is still readable in the mirror


def test_checkout_is_the_exact_sha_after_the_branch_moves_and_is_read_only(
    origin: Origin, source_for: SourceFactory, cache: Path
) -> None:
    source = source_for(origin)
    source.fetch()
    first = source.checkout(origin.first, cache / "checkouts")
    second_sha = commit_and_push(origin.path, {"apps/web/deployment.yaml": "replicas: 5\n"}, "Scale")
    source.refresh()
    second = source.checkout(second_sha, cache / "checkouts")

    assert first == cache / "checkouts" / origin.first
    assert (first / "apps/web/deployment.yaml").read_text() == "replicas: 1\n"
    assert (second / "apps/web/deployment.yaml").read_text() == "replicas: 5\n"
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()) == sorted(FILES)
    modes = [path.stat().st_mode for path in [first, *first.rglob("*")]]
    assert not any(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) for mode in modes)


def test_checkout_ignores_export_attributes_that_git_archive_would_apply(
    origin: Origin, source_for: SourceFactory, cache: Path
) -> None:
    sha = commit_and_push(origin.path, {".gitattributes": "secret.yaml export-ignore\nv.txt export-subst\n",
                                        "secret.yaml": "kept: true\n", "v.txt": "$Format:%H$\n"}, "Attributes")
    source = source_for(origin)
    source.fetch()

    checkout = source.checkout(sha, cache / "checkouts")

    assert (checkout / "secret.yaml").read_text() == "kept: true\n"
    assert (checkout / "v.txt").read_text() == "$Format:%H$\n"


def test_concurrent_checkouts_of_one_sha_share_one_directory(
    origin: Origin, source_for: SourceFactory, cache: Path
) -> None:
    source = source_for(origin)
    source.fetch()
    root = cache / "checkouts"

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(lambda _: source.checkout(origin.first, root), range(4)))

    assert set(paths) == {root / origin.first}
    assert [path.name for path in root.iterdir() if not path.name.endswith(".lock")] == [origin.first]


def test_prune_checkouts_removes_all_but_the_kept_shas(origin: Origin, source_for: SourceFactory, cache: Path) -> None:
    second = commit_and_push(origin.path, {"README.md": "# 2\n"}, "Two")
    source = source_for(origin)
    source.fetch()
    root = cache / "checkouts"
    source.checkout(origin.first, root)
    source.checkout(second, root)

    removed = prune_checkouts(root, keep={second})

    assert removed == [origin.first]
    assert [path.name for path in root.iterdir() if not path.name.startswith(".")] == [second]


def test_prune_checkouts_clears_builds_abandoned_by_a_killed_process(
    origin: Origin, source_for: SourceFactory, cache: Path
) -> None:
    root = cache / "checkouts"
    abandoned = root / f".tmp-{origin.first}-x1y2"
    (abandoned / "apps").mkdir(parents=True)
    (root / f".tmp-{origin.first}-x1y2.index").write_bytes(b"DIRC")
    source = source_for(origin)
    source.fetch()

    prune_checkouts(root, keep={origin.first})
    checkout = source.checkout(origin.first, root)

    assert sorted(path.name for path in root.iterdir() if not path.name.endswith(".lock")) == [origin.first]
    assert (checkout / "README.md").read_text() == FILES["README.md"]


def test_a_deleted_branch_raises_branch_missing(origin: Origin, source_for: SourceFactory) -> None:
    commit_and_push(origin.path, {"x": "1"}, "Feature", branch="feature")
    source = source_for(origin, branch="feature")
    assert source.remote_head()

    delete_branch(origin.path, "feature")

    with pytest.raises(BranchMissing, match="'feature'"):
        source.remote_head()


def test_an_unreachable_remote_raises_source_unreachable_naming_the_url(cache: Path) -> None:
    url = closed_port_url("config.git")
    source = GitSource(url, cache / "git" / "r.git")

    with pytest.raises(SourceUnreachable) as caught:
        source.remote_head()

    assert str(caught.value).startswith(f"cannot reach {url}: ")
    assert "Connection refused" in str(caught.value)
    with pytest.raises(SourceUnreachable, match="cannot clone"):
        source.fetch()
    assert not source.mirror.exists()


def test_a_remote_that_never_answers_times_out_as_unreachable(cache: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/config.git"
        source = GitSource(url, cache / "git" / "r.git", timeout=0.5)

        with pytest.raises(SourceUnreachable, match=r"git ls-remote on git://127\.0\.0\.1:\d+/config\.git timed out"):
            source.remote_head()


@pytest.mark.parametrize("scheme", ["git", "http"], ids=["git-daemon-url", "http-url"])
def test_credentials_written_into_the_url_never_reach_a_message(cache: Path, scheme: str) -> None:
    url = closed_port_url("config.git").replace("git://", f"{scheme}://")
    source = GitSource(url.replace("://", "://deploy:hunter2@"), cache / "git" / "r.git")

    with pytest.raises(SourceUnreachable) as caught:
        source.remote_head()

    assert url in str(caught.value)
    assert "hunter2" not in str(caught.value) and "deploy" not in str(caught.value)
    assert "hunter2" not in repr(source)


def test_a_token_authenticates_over_http_and_stays_out_of_the_mirror(
    served: Path, source_for: SourceFactory
) -> None:
    first = make_bare_repo(served / "config.git", FILES)
    with git_http_server(served, token=TOKEN) as base:
        source = source_for(Origin(served / "config.git", base + "config.git", first), auth=GitAuth(token=TOKEN))
        assert source.refresh() == first

    stored = b"".join(path.read_bytes() for path in source.mirror.rglob("*") if path.is_file())
    assert TOKEN.encode() not in stored


@pytest.mark.parametrize("auth", [None, GitAuth(token="wrong-token-value")], ids=["no-token", "wrong-token"])
def test_http_without_the_right_token_fails_clearly_and_never_shows_a_token(
    served: Path, cache: Path, auth: GitAuth | None
) -> None:
    make_bare_repo(served / "config.git", FILES)
    with git_http_server(served, token=TOKEN) as base:
        source = GitSource(base + "config.git", cache / "git" / "r.git", auth=auth)
        failures = []
        for call in (source.remote_head, source.fetch):
            with pytest.raises(AuthenticationFailed) as caught:
                call()
            failures.append(str(caught.value))

    for message in failures:
        assert base + "config.git" in message
        assert "credentials" in message
        assert TOKEN not in message and "wrong-token-value" not in message
        assert "Basic " not in message


def test_git_ignores_the_callers_environment(
    origin: Origin, source_for: SourceFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'remote.origin.url'='/nowhere'")
    source = source_for(origin)

    assert source.refresh() == origin.first
    assert source.commit(origin.first).summary == "Initial commit"


def test_auth_never_shows_its_secrets() -> None:
    auth = GitAuth(token="tok-123", ssh_private_key="-----BEGIN KEY-----", known_hosts="host ssh-ed25519 AAA")

    assert "tok-123" not in repr(auth) and "BEGIN" not in repr(auth) and "AAA" not in repr(auth)
    assert "x-access-token" in repr(auth)


def test_an_ssh_key_exists_only_as_a_private_file_for_the_call() -> None:
    auth = GitAuth(ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----")

    with git_environment(auth) as env:
        command = env["GIT_SSH_COMMAND"]
        key = Path(command.split(" -i ", 1)[1].split(" ", 1)[0])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().endswith("-----\n")
        assert "IdentitiesOnly=yes" in command and "StrictHostKeyChecking=accept-new" in command
        assert "BEGIN" not in " ".join(env.values())

    assert not key.exists()


def test_a_token_travels_only_in_the_extra_header_environment() -> None:
    with git_environment(GitAuth(token="tok-123")) as env:
        assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
        # base64("x-access-token:tok-123"), the Basic form GitHub, GitLab and Gitea accept for tokens
        assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9rLTEyMw=="
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "GIT_TERMINAL_PROMPT", "GIT_ALLOW_PROTOCOL",
                            "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"}


def test_the_mirror_remembers_the_url_without_credentials(origin: Origin, cache: Path) -> None:
    source = GitSource(origin.url, cache / "git" / "r.git")
    source.fetch()

    assert git("--git-dir", str(source.mirror), "config", "remote.origin.url").strip() == origin.url


def test_commit_people_name_every_author_committer_and_co_author_of_a_range(origin: Origin, cache: Path) -> None:
    alice = {"GIT_AUTHOR_NAME": "Alice Author", "GIT_AUTHOR_EMAIL": "alice@example.com"}
    with_trailers = "Pair on it\n\nCo-authored-by: Carol Coder <carol@example.com>\nco-authored-by: dan <dan@x.test>\n"
    with tempfile.TemporaryDirectory(prefix="work-") as scratch:
        work = Path(scratch) / "work"
        git("clone", "--quiet", str(origin.path), str(work))
        (work / "a.txt").write_text("a")
        git("add", "a.txt", cwd=work)
        git("commit", "--quiet", "-m", "By alice", cwd=work, env=alice)
        (work / "b.txt").write_text("b")
        git("add", "b.txt", cwd=work)
        git("commit", "--quiet", "-m", with_trailers, cwd=work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=work)
        head = git("rev-parse", "HEAD", cwd=work).strip()
    source = GitSource(origin.url, cache / "git" / "people.git")
    source.fetch()

    newest, older = source.commit_people(origin.first, head)
    everything = source.commit_people(None, head)

    assert [person.email for person in newest.co_authors] == ["carol@example.com", "dan@x.test"]
    assert (newest.author.name, newest.committer.email) == ("Test Author", "committer@example.test")
    assert (older.author.name, older.author.email, older.committer.name) == ("Alice Author", "alice@example.com",
                                                                             "Test Committer")
    assert [c.sha for c in everything][-1] == origin.first and len(everything) == 3
    assert source.commit_people(head, head) == []
