"""Who may do what: the roles, permissions and principals of `reconciler.access`, as the dashboard names them.

They live in the reconciler because the approval decision needs them whichever door an approval
comes through; the dashboard only authenticates and asks. Managing people and reading the audit
log and metrics are not about one environment, so they need a binding on `*`.
"""

from __future__ import annotations

from reconciler.access import EVERYWHERE, ROLE_PERMISSIONS, Grant, Permission, Principal

__all__ = ["EVERYWHERE", "ROLE_PERMISSIONS", "Grant", "Permission", "Principal"]
