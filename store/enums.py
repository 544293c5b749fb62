"""The status words the store persists, spelled exactly as DESIGN.md's Vocabulary spells them.

They are `StrEnum`s so that a member compares equal to its word and serialises as that word in the
API, the UI and PR comments without a translation table. The database stores the word (the enum's
value), never the Python member name, so renaming a member never rewrites rows.
"""

from __future__ import annotations

from enum import StrEnum

from repo_schema.vocabulary import Health as Health  # re-exported: the one Health word
from repo_schema.vocabulary import Stage as Stage  # re-exported: the one Stage word


class SyncStatus(StrEnum):
    """Sync status of an environment (Argo CD's words)."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    AWAITING_APPROVAL = "AwaitingApproval"
    DRIFTED = "Drifted"
    UNKNOWN = "Unknown"


class SyncLifecycle(StrEnum):
    """Lifecycle of one sync record; distinct from `SyncStatus`, which describes an environment."""

    PENDING = "pending"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    APPLYING = "applying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class SyncTrigger(StrEnum):
    """What started a sync."""

    POLL = "poll"
    WEBHOOK = "webhook"
    MANUAL = "manual"
    DRIFT = "drift"


class StageStatus(StrEnum):
    """Progress of one stage inside a sync.

    Reuses the sync lifecycle's words where they mean the same thing, plus `skipped` (a stage the
    environment does not define, one not reached because an earlier stage failed, or one left out
    because its inputs did not change since it last applied: its summary then says so under
    `skipped`), so no new word for an existing meaning enters the vocabulary.
    """

    PENDING = "pending"
    PLANNING = "planning"
    APPLYING = "applying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class DriftStatus(StrEnum):
    """A drift report is open until it is resolved."""

    OPEN = "open"
    RESOLVED = "resolved"


class DriftResolution(StrEnum):
    """How an open drift report was closed."""

    HEALED = "healed"
    RESYNCED = "resynced"
    ACCEPTED = "accepted"


class ApprovalDecision(StrEnum):
    """What an approver decided about a plan fingerprint."""

    APPROVE = "approve"
    REJECT = "reject"


class ApprovalSource(StrEnum):
    """Where an approval was given."""

    DASHBOARD = "dashboard"
    CLI = "cli"
    API = "api"
    PR_REVIEW = "pr_review"


class Role(StrEnum):
    """What a role binding lets a user do (each role includes the ones before it, except approver)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


class GitHost(StrEnum):
    """Which Git host's webhooks and REST API a repository uses."""

    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"
    GENERIC = "generic"


class PreviewStatus(StrEnum):
    """Progress of one pull request preview (the commit status words of the Git hosts)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
