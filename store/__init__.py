"""Persistence for Tidegate: SQLAlchemy models, migrations, and encryption of stored secrets.

The bottom layer: it imports none of Tidegate's other packages and holds no business rules.
Typical use by the composition root::

    key = settings.secret_key or load_or_create_key(data_dir)
    box = SecretBox(key)
    db = Database(settings.database_url or sqlite_url(data_dir))
    db.upgrade()
    with db.session() as session:
        session.add(Repository(name="infra", url=url, credentials=box.seal(token)))
"""

from store.database import Database, StoreBusy
from store.engine import PoolLimits, create_database_engine, sqlite_url
from store.enums import (
    ApprovalDecision,
    ApprovalSource,
    DriftResolution,
    DriftStatus,
    GitHost,
    Health,
    PreviewStatus,
    Role,
    Stage,
    StageStatus,
    SyncLifecycle,
    SyncStatus,
    SyncTrigger,
)
from store.migrate import MigrationError, current_revision, downgrade, head_revision, upgrade
from store.models import (
    ApiToken,
    Approval,
    ApprovalPolicyRow,
    AuditEvent,
    Base,
    CommitIdentity,
    DashboardSession,
    DriftItemRow,
    DriftReport,
    Environment,
    Group,
    GroupMember,
    Observation,
    Plan,
    Preview,
    Repository,
    Revision,
    RoleBinding,
    StoredSecret,
    Sync,
    SyncStageResult,
    User,
    WebhookDelivery,
)
from store.secrets import KEY_SETTING, Sealed, SecretBox, SecretKeyError, load_or_create_key
from store.types import utcnow

__all__ = [
    "KEY_SETTING",
    "ApiToken",
    "Approval",
    "ApprovalDecision",
    "ApprovalPolicyRow",
    "ApprovalSource",
    "AuditEvent",
    "Base",
    "CommitIdentity",
    "DashboardSession",
    "Database",
    "DriftItemRow",
    "DriftReport",
    "DriftResolution",
    "DriftStatus",
    "Environment",
    "GitHost",
    "Group",
    "GroupMember",
    "Health",
    "MigrationError",
    "Observation",
    "Plan",
    "PoolLimits",
    "Preview",
    "PreviewStatus",
    "Repository",
    "Revision",
    "Role",
    "RoleBinding",
    "Sealed",
    "SecretBox",
    "SecretKeyError",
    "Stage",
    "StageStatus",
    "StoreBusy",
    "StoredSecret",
    "Sync",
    "SyncLifecycle",
    "SyncStageResult",
    "SyncStatus",
    "SyncTrigger",
    "User",
    "WebhookDelivery",
    "create_database_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "load_or_create_key",
    "sqlite_url",
    "upgrade",
    "utcnow",
]
