"""Prometheus metrics, computed from the store and Redis when scraped.

Every number is read at scrape time from the rows the reconciler and webhooks already write (and the
Celery queues' Redis lists), so any `tidegate serve` process gives the same answer and nothing is
lost when one restarts. All names start with `tidegate_`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler import observations, pollstats
from reconciler.runtime import Services
from reconciler.status import status_of
from store import (
    DriftItemRow,
    DriftReport,
    DriftStatus,
    Environment,
    Repository,
    Stage,
    Sync,
    SyncLifecycle,
    WebhookDelivery,
    utcnow,
)

QUEUES = ("poll", "plan", "apply", "drift", "preview")
BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
TERMINAL = (SyncLifecycle.SUCCEEDED, SyncLifecycle.FAILED, SyncLifecycle.SUPERSEDED)


class StoreCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        with self.services.database.session() as session:
            yield from _sync_durations(session)
            yield _syncs_by_result(session)
            yield _open_drift(session)
            yield from _environments(session)
            yield _webhook_deliveries(session)
            yield from _polls(session)
        yield self._queues()
        yield self._poll_latency()

    def _queues(self) -> Metric:
        family = GaugeMetricFamily("tidegate_queue_depth", "Tasks waiting in each Celery queue (Redis list length).",
                                   labels=["queue"])
        for queue in QUEUES:
            try:
                depth = int(self.services.redis.llen(queue))
            except RedisError:
                continue
            family.add_metric([queue], depth)
        return family


    def _poll_latency(self) -> Metric:
        family = HistogramMetricFamily("tidegate_git_poll_duration_seconds",
                                       "Seconds one poll of a repository took (ls-remote; fetch and validation "
                                       "when the head moved).", labels=["repository"])
        try:
            histograms = pollstats.read(self.services.redis)
        except RedisError:
            return family
        for latency in histograms:
            buckets = [(str(bound), float(count)) for bound, count in latency.cumulative]
            family.add_metric([latency.repository], [*buckets, ("+Inf", float(latency.count))],
                              latency.total_seconds)
        return family


def _sync_durations(session: Session) -> Iterator[Metric]:
    rows = session.execute(select(Sync.status, Sync.started_at, Sync.finished_at)
                           .where(Sync.status.in_(TERMINAL), Sync.started_at.is_not(None),
                                  Sync.finished_at.is_not(None)))
    by_result: dict[str, list[float]] = {}
    for status, started, finished in rows:
        if started is not None and finished is not None:
            by_result.setdefault(status.value, []).append(max((finished - started).total_seconds(), 0.0))
    family = HistogramMetricFamily("tidegate_sync_duration_seconds", "Seconds from a sync's start to its end.",
                                   labels=["result"])
    for result, durations in sorted(by_result.items()):
        buckets = [(str(bound), sum(d <= bound for d in durations)) for bound in BUCKETS]
        buckets.append(("+Inf", len(durations)))
        family.add_metric([result], buckets, sum(durations))
    yield family


def _syncs_by_result(session: Session) -> Metric:
    family = CounterMetricFamily("tidegate_syncs", "Finished syncs by result.", labels=["result"])
    counts = dict(session.execute(select(Sync.status, func.count()).where(Sync.status.in_(TERMINAL))
                                  .group_by(Sync.status)).all())
    for result in TERMINAL:
        family.add_metric([result.value], counts.get(result, 0))
    return family


def _open_drift(session: Session) -> Metric:
    family = GaugeMetricFamily("tidegate_drift_open_items", "Items of open drift reports, by stage.",
                               labels=["stage"])
    counts = dict(session.execute(select(DriftItemRow.stage, func.count()).join(DriftReport)
                                  .where(DriftReport.status == DriftStatus.OPEN).group_by(DriftItemRow.stage))
                  .all())
    for stage in Stage:
        family.add_metric([stage.value], counts.get(stage, 0))
    return family


def _environments(session: Session) -> Iterator[Metric]:
    family = GaugeMetricFamily("tidegate_environment_info", "One per environment, with its sync status and health.",
                               labels=["repository", "environment", "sync_status", "health"])
    for repository, env in session.execute(select(Repository.name, Environment).join(Repository)):
        family.add_metric([repository, env.name, status_of(session, env).value,
                           observations.observed(env).health.value], 1)
    yield family


def _webhook_deliveries(session: Session) -> Metric:
    family = CounterMetricFamily("tidegate_webhook_deliveries", "Webhook deliveries accepted, by host and event.",
                                 labels=["host", "event"])
    for host, event, count in session.execute(select(WebhookDelivery.host, WebhookDelivery.event, func.count())
                                              .group_by(WebhookDelivery.host, WebhookDelivery.event)):
        family.add_metric([host.value, event], count)
    return family


def _polls(session: Session) -> Iterator[Metric]:
    """How stale each repository's view of Git is (each poll's duration: `pollstats`, in Redis)."""
    age = GaugeMetricFamily("tidegate_git_poll_age_seconds", "Seconds since each repository was last polled.",
                            labels=["repository"])
    failing = GaugeMetricFamily("tidegate_git_poll_failing", "1 when the repository's last poll failed.",
                                labels=["repository"])
    now: datetime = utcnow()
    for repo in session.scalars(select(Repository)):
        if repo.last_polled_at is not None:
            age.add_metric([repo.name], max((now - repo.last_polled_at).total_seconds(), 0.0))
        failing.add_metric([repo.name], 1 if repo.poll_error else 0)
    yield age
    yield failing


def render(services: Services) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(services))
    return generate_latest(registry)
