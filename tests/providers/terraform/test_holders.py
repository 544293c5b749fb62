"""Whose state lock a run may break: its own, or a dead worker's; never a live or an unknown holder's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.terraform.holders import Holder, judge, run_hostname, worker_of

OWN_HOST = "w.vm1:4242-tf0123456789"
HEARTBEATS: dict[str, bool | None] = {"vm1:111": True, "vm2:222": False, "vm3:333": None}


def _dead(worker: str) -> bool | None:
    return HEARTBEATS.get(worker)


def _broken_question(worker: str) -> bool | None:
    raise ConnectionError("redis is down")


@pytest.mark.parametrize(("who", "worker_dead", "verdict"), [
    pytest.param(f"tidegate-runner@{OWN_HOST}", _dead, Holder.own, id="own-lock-released"),
    pytest.param("tidegate-runner@w.vm1:111-tfaaaaaaaaaa", _dead, Holder.dead, id="dead-worker-broken"),
    pytest.param("tidegate-runner@w.vm2:222-tfbbbbbbbbbb", _dead, Holder.alive, id="live-worker-respected"),
    pytest.param("tidegate-runner@w.vm3:333-tfcccccccccc", _dead, Holder.unknown, id="never-recorded-worker"),
    pytest.param("tidegate-runner@w.vm1:111-tfaaaaaaaaaa", None, Holder.unknown, id="nobody-to-ask"),
    pytest.param("tidegate-runner@w.vm1:111-tfaaaaaaaaaa", _broken_question, Holder.unknown, id="question-failed"),
    pytest.param("tidegate-runner@vm1-tf3f9a0c21d4", _dead, Holder.unknown, id="anonymous-run-names-no-worker"),
    pytest.param("alice@laptop", _dead, Holder.unknown, id="a-person-at-a-laptop"),
    pytest.param("w.vm1:111-tfaaaaaaaaaa", _dead, Holder.unknown, id="no-user-part"),
    pytest.param("tidegate-runner@w.vm1:111", _dead, Holder.unknown, id="no-run-suffix"),
    pytest.param("", _dead, Holder.unknown, id="empty-who"),
])
def test_a_lock_is_judged_by_the_worker_its_who_names(
        who: str, worker_dead: Callable[[str], bool | None] | None, verdict: Holder) -> None:
    assert judge(who, own_host=OWN_HOST, worker_dead=worker_dead) is verdict


def test_a_run_hostname_names_its_worker_and_reads_back() -> None:
    host = run_hostname("vm1.example:4242")
    assert worker_of(f"tidegate-runner@{host}") == "vm1.example:4242"
    assert len(host) <= 64  # sethostname's limit
    assert run_hostname("vm1.example:4242") != host  # unique per run


@pytest.mark.parametrize("worker", [
    pytest.param(None, id="no-worker"),
    pytest.param("vm 1:42", id="space"),
    pytest.param("x" * 60, id="too-long-for-a-host-name"),
])
def test_a_run_without_a_usable_worker_identity_names_none(worker: str | None) -> None:
    assert worker_of(f"tidegate-runner@{run_hostname(worker)}") is None
