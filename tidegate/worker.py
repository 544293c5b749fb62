"""The Celery app, and the services each worker process runs tasks with.

Tasks are `shared_task`s in `reconciler/` and `drift/`; this module only builds the app around
them: the broker (Redis), the queues by kind of work, late acknowledgement (a killed worker's task
is redelivered), the beat schedule (poll tick, drift tick, sweeper), and, in every worker process,
the `Services` the tasks read (store, Redis, targets — real or sandbox —, data directory).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from kombu.entity import Queue as KombuQueue

from drift.live import stand_for_election
from reconciler import heartbeats, sealing
from reconciler.runtime import Services, configure
from reconciler.secrets import StoredSecrets
from reconciler.targets import Targets
from reconciler.task_names import QUEUES as TASK_QUEUES
from reconciler.task_names import Task
from reconciler.tasks import CeleryQueue
from tidegate import routine_logs
from tidegate.redis_server import redis_client
from tidegate.settings import Settings
from tidegate.targets import RealTargets, SandboxTargets
from tidegate.wiring import install_seal, open_store

log = logging.getLogger("tidegate.worker")

ROUTES = {str(task): queue for task, queue in TASK_QUEUES.items()}
QUEUES = tuple(dict.fromkeys(TASK_QUEUES.values()))


def make_app(settings: Settings) -> Celery:
    app = Celery("tidegate", broker=settings.broker_url,
                 include=["reconciler.tasks", "reconciler.preview_tasks", "drift.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_queues=[KombuQueue(name) for name in QUEUES],
        task_default_queue="plan",
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        # A broker that does not answer must fail a publish within seconds (`tidegate serve` answers 503),
        # not after the operating system's TCP timeout.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout, "socket_connect_timeout": 5},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        beat_schedule={
            "poll-tick": {"task": str(Task.SCHEDULE), "schedule": settings.scheduler_tick},
            "drift-tick": {"task": str(Task.DRIFT_TICK), "schedule": settings.scheduler_tick},
            "sweep": {"task": str(Task.SWEEP), "schedule": settings.sweep_interval},
        },
        timezone="UTC",
    )
    app.set_default()
    routine_logs.install()  # per-tick lines at DEBUG: the INFO log says what happened
    return app


def targets_for(settings: Settings, secrets: StoredSecrets | None = None) -> Targets:
    if settings.sandbox_map is not None:
        log.info("sandbox mode: endpoints from %s", settings.sandbox_map)
        return SandboxTargets(settings, settings.sandbox_map, secrets)
    return RealTargets(settings, secrets)


def build_services(settings: Settings) -> Services:
    store = open_store(settings, migrate=False)
    stored = StoredSecrets(store.database, store.secrets)
    return Services(
        database=store.database, secrets=store.secrets, redis=redis_client(settings.client_redis_url),
        targets=targets_for(settings, stored), data_dir=settings.data_dir, queue=CeleryQueue(),
        lock_ttl=settings.lock_ttl, health_timeout=settings.health_timeout, poll_jitter=settings.poll_jitter,
    )


def install(settings: Settings) -> None:
    """Configure this process's services now, and again in every pool child after it forks; the
    worker's main process also stands for election to run the live Kubernetes watches, and says
    in its log and in Redis (for `tidegate status` and /healthz) whether it can seal repository code."""
    services = build_services(settings)
    configure(services)
    stop = threading.Event()
    seal = install_seal(settings)
    status = seal.status()
    if status.sealed:
        log.info("worker %s: %s", services.owner, status.describe())
    else:
        log.error("worker %s: %s", services.owner, status.describe())
    sealing.keep_publishing(services.redis, services.owner, status, stop)
    heartbeats.keep_beating(services.redis, services.owner, stop)

    @worker_process_init.connect(weak=False)
    def _child(**_: Any) -> None:
        child = build_services(settings)  # owner `host:pid` of this pool child, which runs the tasks
        configure(child)
        install_seal(settings)
        heartbeats.keep_beating(child.redis, child.owner, stop)  # dies with the child (a daemon thread)

    @worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        if settings.live_watches:
            stand_for_election(build_services(settings), stop, ttl=settings.leader_ttl)

    @worker_shutdown.connect(weak=False)
    def _shutdown(**_: Any) -> None:
        stop.set()
        sealing.withdraw(services.redis, services.owner)
