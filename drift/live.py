"""Live Kubernetes drift: watches on every synced environment's managed objects, in one worker.

Exactly one worker process runs the watches at a time: each worker's main process stands for
election on a Redis leader lock (`reconciler.locks.LeaderLock`); the leader starts one
`KubernetesStage.watch` per synced environment with workloads and, when an event says a managed
object changed out of band, queues a drift check for that environment (debounced: a burst of
events is one check). When the leader dies its lock expires and another worker takes the watches
over within the lock's time to live. The watch only says "look now"; the drift check confirms with
the same comparison as plan and records the report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from drift.detect import STARTUP, watch_trigger
from providers.stage import LiveChange, Stage, Watcher
from reconciler import observations, repositories
from reconciler.locks import LeaderLock
from reconciler.runtime import Services
from reconciler.session import open_session, recorded_outputs
from store import Environment

log = logging.getLogger(__name__)
LEADER = "live-watches"


@dataclass
class _Watchers:
    """The watches of one environment's stages, stopped together."""

    watchers: list[Watcher]

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stop()


@dataclass
class _Watched:
    revision: str
    watcher: Watcher


class LiveWatches:
    """The leader's work: keep one watcher per synced environment, queue drift checks on events."""

    def __init__(self, services: Services, *, refresh: float = 2.0, debounce: float = 1.0) -> None:
        self.services = services
        self.refresh = refresh
        self.debounce = debounce
        self.watched: dict[int, _Watched] = {}
        self._last_queued: dict[int, float] = {}
        self._looks: dict[int, float] = {}
        self.retry_look = 30.0
        self._lock = threading.Lock()

    def lead(self, lost: threading.Event) -> None:
        """Run until `lost` is set (leadership gone or the worker stopping). A new leader first asks
        for a look at every synced environment: what the last run saw may be gone."""
        log.info("live watches: this worker leads")
        self.look_again()
        try:
            while not lost.is_set():
                self.reconcile()
                lost.wait(self.refresh)
        finally:
            self.stop_all()
            log.info("live watches: leadership given up")

    def reconcile(self) -> None:
        """Watch exactly the synced environments at their synced revisions; ask for the looks
        environments wait for."""
        self.ask_for_looks()
        wanted = self._wanted()
        for env_id in [e for e in self.watched if wanted.get(e) != self.watched[e].revision]:
            self.watched.pop(env_id).watcher.stop()
        for env_id, revision in wanted.items():
            if env_id not in self.watched:
                try:
                    watcher = self._start(env_id)
                except Exception as error:  # one environment's cluster must not stop the rest
                    log.warning("live watches: cannot watch environment %s: %s", env_id, error)
                    continue
                if watcher is not None:
                    self.watched[env_id] = _Watched(revision, watcher)

    def look_again(self) -> None:
        """A new leader looks at every synced environment at once (the watches were down; what was
        seen may be gone). Health shows what was last seen until then: a leader taking over is not a
        restart (`tidegate up` is: it marks every environment not looked at, see `ask_for_looks`)."""
        with self.services.database.session() as session:
            ids = list(session.scalars(select(Environment.id).where(Environment.synced_revision_id.is_not(None))))
        for env_id in ids:
            self.services.queue.drift(env_id, STARTUP)

    def ask_for_looks(self, now: float | None = None) -> list[int]:
        """Queue a check of every environment whose health waits for a look (a restart asked for
        one; a check skipped because a sync was running did not give it), at most once per
        `retry_look` seconds each."""
        now = time.monotonic() if now is None else now
        with self.services.database.session() as session:
            waiting = observations.waiting(session)
        asked = [env_id for env_id in waiting if now - self._looks.get(env_id, -1e9) >= self.retry_look]
        for env_id in asked:
            self._looks[env_id] = now
            self.services.queue.drift(env_id, STARTUP)
        return asked

    def stop_all(self) -> None:
        for watched in self.watched.values():
            watched.watcher.stop()
        self.watched.clear()

    def _wanted(self) -> dict[int, str]:
        with self.services.database.session() as session:
            rows = session.scalars(select(Environment).where(Environment.synced_revision_id.is_not(None)))
            return {env.id: env.synced_revision.sha for env in rows if env.synced_revision is not None}

    def _start(self, env_id: int) -> Watcher | None:
        with self.services.database.session() as session:
            env = session.get_one(Environment, env_id)
            assert env.synced_revision is not None
            repo_name, env_name, sha = env.repository.name, env.name, env.synced_revision.sha
            recorded = recorded_outputs(self.services, session, env_id)
            root = repositories.checkout(self.services, env.repository, sha)
        loaded = open_session(self.services, repo_name, env_name, sha, root, recorded)
        watchers: list[Watcher] = []
        for stage in loaded.stages:  # every stage that has a live view watches what it manages
            context = loaded.context(stage)
            watcher = self.services.stages(stage).watch(context, self._listener(env_id, stage)) \
                if context is not None else None
            if watcher is not None:
                watchers.append(watcher)
        if not watchers:
            return None
        log.info("live watches: watching %s/%s at %s", repo_name, env_name, sha[:12])
        return _Watchers(watchers)

    def _listener(self, env_id: int, stage: Stage) -> Callable[[LiveChange], None]:
        return lambda event: self._on_event(env_id, stage, event)

    def _on_event(self, env_id: int, stage: Stage, event: LiveChange) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_queued.get(env_id, -1e9) < self.debounce:
                return
            self._last_queued[env_id] = now
        log.info("live watches: environment %s: %s %s %s", env_id, event.address, event.reason, ",".join(event.fields))
        self.services.queue.drift(env_id, watch_trigger(stage))


def stand_for_election(services: Services, stop: threading.Event, *, ttl: float = 15.0) -> threading.Thread:
    """Start a daemon thread that competes for the leader lock and runs the watches while it leads."""
    watches = LiveWatches(services)
    leader = LeaderLock(services.redis, LEADER, ttl=ttl)
    thread = threading.Thread(target=leader.run, args=(services.owner, watches.lead, stop), name="live-watches",
                              daemon=True)
    thread.start()
    return thread
