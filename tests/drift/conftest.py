"""Drift tests use the reconciler's store, Redis and example environment fixtures."""

from tests.reconciler.conftest import environment, redis_server, services

__all__ = ["environment", "redis_server", "services"]
