"""The end-to-end suite runs on the shared bootstrapped system of tests/support/system.py."""

from tests.support.system import Bootstrap, System, wait_for

__all__ = ["Bootstrap", "System", "wait_for"]
