"""Environment locks and leader election against a real Redis, with real competing processes."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from reconciler.locks import EnvironmentLock, LeaderLock, LockHeld, LockLost
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis, redis_client

pytestmark = pytest.mark.integration

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("locks-redis")) as running:
        yield running


@pytest.fixture
def client(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    connection = redis_client(server.client_url)
    connection.flushdb()
    yield connection
    connection.close()


def wait_for_peers(client: redis.Redis, key: str, peers: int) -> None:
    """A barrier, so the processes really contend instead of running one after the other."""
    client.incr(key)
    while int(client.get(key) or 0) < peers:
        time.sleep(0.005)


def hold_repeatedly(client_url: str, name: str, owner: str, iterations: int, peers: int) -> None:
    """One competing worker (its own process): take the lock, record the critical section, release."""
    client = redis_client(client_url)
    lock = EnvironmentLock(client, name, ttl=10.0)
    wait_for_peers(client, "test:ready", peers)
    for _ in range(iterations):
        # Tight non-blocking retries make both processes race for every single acquire.
        while (lease := lock.acquire(owner)) is None:
            time.sleep(0.0002)
        enter = time.monotonic()
        inside = client.incr("test:inside")
        lease.ensure()
        time.sleep(0.001)
        client.decr("test:inside")
        leave = time.monotonic()
        client.rpush("test:sections", f"{lease.token} {enter!r} {leave!r} {inside} {owner}")
        assert lease.release()
        time.sleep(0.001)


def campaign(client_url: str, name: str, owner: str, ttl: float) -> None:
    """A leader candidate (its own process) that announces its election and then works until killed."""
    client = redis_client(client_url)

    def work(lost: threading.Event) -> None:
        client.rpush("test:elected", owner)
        lost.wait()

    LeaderLock(client, name, ttl=ttl).run(owner, work, threading.Event())


def test_two_processes_taking_one_environment_lock_never_overlap(server: EmbeddedRedis, client: redis.Redis) -> None:
    iterations, peers = 40, 2
    workers = [
        SPAWN.Process(target=hold_repeatedly, args=(server.client_url, "prod", f"worker-{n}", iterations, peers))
        for n in range(peers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    lines: list[bytes] = client.lrange("test:sections", 0, -1)  # type: ignore[assignment]
    records = (line.decode().split() for line in lines)
    sections = sorted(
        (float(enter), float(leave), int(token), int(inside), owner) for token, enter, leave, inside, owner in records
    )
    assert len(sections) == iterations * peers
    assert {owner for *_, owner in sections} == {"worker-0", "worker-1"}
    assert all(inside == 1 for _, _, _, inside, _ in sections)
    for earlier, later in itertools.pairwise(sections):
        assert earlier[1] < later[0], f"critical sections overlap: {earlier} and {later}"
        assert earlier[2] < later[2], f"fencing tokens not increasing: {earlier} then {later}"


def test_held_lock_is_refused_and_names_its_owner(client: redis.Redis) -> None:
    lock = EnvironmentLock(client, "staging", ttl=5.0)
    lease = lock.acquire("worker-a")
    assert lease is not None
    assert lock.current() == (lease.token, "worker-a")
    assert lock.acquire("worker-b") is None
    with pytest.raises(LockHeld, match="worker-a") as held:
        lock.acquire("worker-b", blocking_timeout=0.1)
    assert held.value.owner == "worker-a" and held.value.token == lease.token
    assert lease.release()
    assert lock.current() is None
    follower = lock.acquire("worker-b")
    assert follower is not None and follower.token == lease.token + 1


def test_blocking_acquire_gets_the_lock_once_the_holder_releases(client: redis.Redis) -> None:
    lock = EnvironmentLock(client, "qa", ttl=5.0)
    first = lock.acquire("worker-a")
    assert first is not None
    threading.Timer(0.1, first.release).start()
    second = lock.acquire("worker-b", blocking_timeout=None)
    assert second is not None and second.owner == "worker-b" and second.token > first.token


def test_expired_lease_is_no_longer_ours_and_its_late_release_spares_the_new_holder(client: redis.Redis) -> None:
    lock = EnvironmentLock(client, "prod", ttl=0.2)
    stale = lock.acquire("slow-worker")
    assert stale is not None and stale.check()
    time.sleep(0.3)
    fresh = lock.acquire("next-worker")
    assert fresh is not None and fresh.token > stale.token

    assert not stale.check()
    with pytest.raises(LockLost):
        stale.ensure()
    assert not stale.renew()
    assert not stale.release()
    assert fresh.check()
    assert lock.current() == (fresh.token, "next-worker")


def test_keepalive_holds_a_lease_past_its_ttl_and_stops_renewing_after_the_block(client: redis.Redis) -> None:
    lock = EnvironmentLock(client, "prod", ttl=0.3)
    lease = lock.acquire("long-apply")
    assert lease is not None
    with lease.keepalive():
        time.sleep(1.0)
        assert lease.check()
        assert lock.acquire("intruder") is None
    time.sleep(0.4)
    assert not lease.check()


def test_keepalive_marks_the_lease_lost_when_another_holder_took_the_key(client: redis.Redis) -> None:
    lock = EnvironmentLock(client, "prod", ttl=0.6)
    lease = lock.acquire("worker-a")
    assert lease is not None
    with lease.keepalive():
        client.set(lock.key, b"999:someone-else", px=5000)
        assert lease.lost.wait(timeout=1.0)
        assert not lease.check()
    assert lock.current() == (999, "someone-else")


def test_second_candidate_takes_over_within_ttl_after_the_leader_is_killed(
    server: EmbeddedRedis, client: redis.Redis
) -> None:
    ttl = 1.0
    leader = SPAWN.Process(target=campaign, args=(server.client_url, "kube-watch", "first", ttl))
    leader.start()
    try:
        assert client.blpop(["test:elected"], timeout=30) == (b"test:elected", b"first")
        stop = threading.Event()
        elected_at: list[float] = []

        def work(lost: threading.Event) -> None:
            elected_at.append(time.monotonic())
            lost.wait()

        candidate = LeaderLock(client, "kube-watch", ttl=ttl)
        runner = threading.Thread(target=candidate.run, args=("second", work, stop))
        runner.start()
        time.sleep(ttl * 1.5)
        assert elected_at == [], "the live leader's lease was taken over"

        leader.kill()
        leader.join()
        killed_at = time.monotonic()
        deadline = killed_at + ttl + 1.0
        while not elected_at and time.monotonic() < deadline:
            time.sleep(0.02)
        assert elected_at, "no takeover within ttl + 1 s"
        assert elected_at[0] - killed_at <= ttl + 1.0
        holder = candidate.current()
        assert holder is not None and holder[1] == "second"

        stop.set()
        runner.join(timeout=5)
        assert not runner.is_alive()
        assert candidate.current() is None, "a leader that stops must release at once"
    finally:
        if leader.is_alive():
            leader.kill()
            leader.join()


def test_leader_whose_lease_is_taken_is_told_to_stop_working(client: redis.Redis) -> None:
    ttl = 0.6
    lock = LeaderLock(client, "kube-watch", ttl=ttl)
    stop = threading.Event()
    lost_seen = threading.Event()
    elected = threading.Event()

    def work(lost: threading.Event) -> None:
        elected.set()
        if lost.wait(timeout=5):
            lost_seen.set()

    runner = threading.Thread(target=lock.run, args=("leader", work, stop))
    runner.start()
    try:
        assert elected.wait(timeout=5)
        client.set("tidegate:lock:leader:kube-watch", b"999:usurper", px=10_000)
        assert lost_seen.wait(timeout=ttl), "renewal failure did not reach the work"
    finally:
        stop.set()
        runner.join(timeout=5)
    assert lock.current() == (999, "usurper"), "the old leader must not delete the new leader's key"
