"""ORM models: one class per noun of DESIGN.md's Vocabulary, nothing but columns and relations.

Rules about these records (when a sync may apply, what counts as drift, who may approve) belong to
the reconciler, drift and dashboard layers; this module only says what is stored and how rows
relate. Child rows are removed by the database (`ON DELETE CASCADE`) so that deleting through
SQL or through the ORM gives the same result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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
    SyncTrigger,
)
from store.secrets import Sealed
from store.types import RedactedJSON, RedactedText, SealedText, UTCDateTime, WordEnum, json_type, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names: later migrations (and SQLite batch mode) must address them by name."""

CASCADE = "CASCADE"
SET_NULL = "SET NULL"


class Base(DeclarativeBase):
    """Declarative base holding the metadata that migrations are generated from and compared with."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Repository(Base):
    """A registered config repo; only registered repos are ever cloned and run."""

    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    url: Mapped[str] = mapped_column(Text)
    branch: Mapped[str] = mapped_column(String(255), default="main")
    poll_interval_seconds: Mapped[int] = mapped_column(Integer, default=120)
    credentials: Mapped[Sealed | None] = mapped_column(SealedText())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    head_sha: Mapped[str | None] = mapped_column(String(64))
    """The branch head the last successful poll saw (a poll that finds it unchanged renders nothing)."""
    last_polled_at: Mapped[datetime | None]
    poll_error: Mapped[str | None] = mapped_column(Text)
    """Why the last poll failed (unreachable, branch deleted, force-push); NULL after a good poll."""
    host: Mapped[GitHost] = mapped_column(WordEnum(GitHost), default=GitHost.GENERIC)
    host_api_url: Mapped[str | None] = mapped_column(Text)
    """The Git host's REST API (commit statuses, PR comments), e.g. https://api.github.com."""
    host_repository: Mapped[str | None] = mapped_column(String(255))
    """The repository as the host names it (`owner/name`, or GitLab's project id/path)."""
    host_token: Mapped[Sealed | None] = mapped_column(SealedText())
    webhook_secret: Mapped[Sealed | None] = mapped_column(SealedText())
    """This repository's webhook secret; TIDEGATE_WEBHOOK_SECRET when NULL."""

    revisions: Mapped[list[Revision]] = relationship(
        back_populates="repository", cascade="all, delete-orphan", passive_deletes=True
    )
    environments: Mapped[list[Environment]] = relationship(
        back_populates="repository", cascade="all, delete-orphan", passive_deletes=True
    )


class Revision(Base):
    """A commit seen on a ref of a repository (the same SHA on two refs is two revisions)."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("repository_id", "ref", "sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete=CASCADE), index=True)
    ref: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64), index=True)
    author: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")
    committed_at: Mapped[datetime]

    repository: Mapped[Repository] = relationship(back_populates="revisions")


class Environment(Base):
    """An environment of a repository, with where it should be and where it last got to."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete=CASCADE), index=True)
    name: Mapped[str] = mapped_column(String(253))
    desired_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("revisions.id", ondelete=SET_NULL), index=True
    )
    synced_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("revisions.id", ondelete=SET_NULL), index=True
    )
    health: Mapped[Health] = mapped_column(WordEnum(Health), default=Health.UNKNOWN)
    auto_sync_paused: Mapped[bool] = mapped_column(default=False)

    repository: Mapped[Repository] = relationship(back_populates="environments")
    desired_revision: Mapped[Revision | None] = relationship(foreign_keys=[desired_revision_id])
    synced_revision: Mapped[Revision | None] = relationship(foreign_keys=[synced_revision_id])
    plans: Mapped[list[Plan]] = relationship(
        back_populates="environment", cascade="all, delete-orphan", passive_deletes=True
    )
    syncs: Mapped[list[Sync]] = relationship(
        back_populates="environment", cascade="all, delete-orphan", passive_deletes=True
    )
    drift_reports: Mapped[list[DriftReport]] = relationship(
        back_populates="environment", cascade="all, delete-orphan", passive_deletes=True
    )
    observation: Mapped[Observation | None] = relationship(
        back_populates="environment", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class Plan(Base):
    """An environment's stage plans for one revision and the fingerprint approvals bind to."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete=CASCADE), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete=CASCADE), index=True)
    fingerprint: Mapped[str] = mapped_column(String(128), index=True)
    stages: Mapped[dict[str, Any]] = mapped_column(RedactedJSON(), default=dict)
    """Per-stage plan summaries keyed by stage word (changes, digest); secrets masked (on write, too)."""
    payload: Mapped[Sealed | None] = mapped_column(SealedText())
    """What apply needs to execute exactly this plan (saved plan paths, manifests with Secrets): sealed."""
    superseded: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    environment: Mapped[Environment] = relationship(back_populates="plans")
    revision: Mapped[Revision] = relationship()


class Sync(Base):
    """One attempt to make an environment match a plan."""

    __tablename__ = "syncs"
    __table_args__ = (Index("ix_syncs_environment_id_created_at", "environment_id", "created_at"),)
    """Sync history is read per environment, newest first; the index also serves the foreign key."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete=CASCADE))
    revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id", ondelete=SET_NULL), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete=SET_NULL), index=True)
    trigger: Mapped[SyncTrigger] = mapped_column(WordEnum(SyncTrigger))
    status: Mapped[SyncLifecycle] = mapped_column(WordEnum(SyncLifecycle), default=SyncLifecycle.PENDING)
    fencing_token: Mapped[int | None] = mapped_column(BigInteger)
    """Token of the environment lock held while this sync applies; a smaller one means a stale worker."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(RedactedText())

    environment: Mapped[Environment] = relationship(back_populates="syncs")
    revision: Mapped[Revision | None] = relationship()
    plan: Mapped[Plan | None] = relationship()
    stage_results: Mapped[list[SyncStageResult]] = relationship(
        back_populates="sync", cascade="all, delete-orphan", passive_deletes=True
    )
    approvals: Mapped[list[Approval]] = relationship(back_populates="sync", passive_deletes=True)


class SyncStageResult(Base):
    """What one stage did during a sync; its outputs are stored sealed (they hold kubeconfigs)."""

    __tablename__ = "sync_stage_results"
    __table_args__ = (UniqueConstraint("sync_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("syncs.id", ondelete=CASCADE), index=True)
    stage: Mapped[Stage] = mapped_column(WordEnum(Stage))
    status: Mapped[StageStatus] = mapped_column(WordEnum(StageStatus), default=StageStatus.PENDING)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any]] = mapped_column(RedactedJSON(), default=dict)
    log: Mapped[str] = mapped_column(RedactedText(), default="")
    outputs: Mapped[Sealed | None] = mapped_column(SealedText())

    sync: Mapped[Sync] = relationship(back_populates="stage_results")


class DriftReport(Base):
    """The differences found by one observation of an environment, open until resolved."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete=CASCADE), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete=CASCADE), index=True)
    status: Mapped[DriftStatus] = mapped_column(WordEnum(DriftStatus), default=DriftStatus.OPEN)
    resolution: Mapped[DriftResolution | None] = mapped_column(WordEnum(DriftResolution))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]

    environment: Mapped[Environment] = relationship(back_populates="drift_reports")
    revision: Mapped[Revision] = relationship()
    items: Mapped[list[DriftItemRow]] = relationship(
        back_populates="report", cascade="all, delete-orphan", passive_deletes=True
    )


class Observation(Base):
    """The last look at an environment's live world, one row per environment.

    `observed_at` is when a drift check (or a sync's health wait) last read the live objects;
    `requested_at` when Tidegate (re)started and asked for a fresh look: until an observation is
    newer, the environment's health is not known. `stale_after` (two drift intervals, seconds)
    says when an observation is too old to stand for the live world. `objects` is per object
    `{stage, group, address, health, reason}`; `error` why the last look could not see everything.
    """

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete=CASCADE), unique=True)
    observed_at: Mapped[datetime | None]
    requested_at: Mapped[datetime | None]
    stale_after: Mapped[float | None] = mapped_column(Float)
    health: Mapped[Health] = mapped_column(WordEnum(Health), default=Health.UNKNOWN)
    error: Mapped[str] = mapped_column(RedactedText(), default="")
    objects: Mapped[Any] = mapped_column(RedactedJSON(none_as_null=True), nullable=True)

    environment: Mapped[Environment] = relationship(back_populates="observation")


class DriftItemRow(Base):
    """One live difference; `desired`/`live` are JSON values, NULL when the side does not exist."""

    __tablename__ = "drift_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("drift_reports.id", ondelete=CASCADE), index=True)
    stage: Mapped[Stage] = mapped_column(WordEnum(Stage))
    address: Mapped[str] = mapped_column(RedactedText())
    field: Mapped[str] = mapped_column(RedactedText(), default="")
    desired: Mapped[Any] = mapped_column(RedactedJSON(none_as_null=True), nullable=True)
    live: Mapped[Any] = mapped_column(RedactedJSON(none_as_null=True), nullable=True)

    report: Mapped[DriftReport] = relationship(back_populates="items")


class Approval(Base):
    """Who decided what about a plan fingerprint, and from where; kept even if its sync is deleted."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_fingerprint: Mapped[str] = mapped_column(String(128), index=True)
    sync_id: Mapped[int | None] = mapped_column(ForeignKey("syncs.id", ondelete=SET_NULL), index=True)
    user: Mapped[str] = mapped_column(String(255))
    decision: Mapped[ApprovalDecision] = mapped_column(WordEnum(ApprovalDecision))
    source: Mapped[ApprovalSource] = mapped_column(WordEnum(ApprovalSource))
    comment: Mapped[str] = mapped_column(RedactedText(), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sync: Mapped[Sync | None] = relationship(back_populates="approvals")


class AuditEvent(Base):
    """One audited action (security model: every action is audited); never references other rows."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(RedactedJSON(), default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class User(Base):
    """A person (or robot) who signs in to the dashboard or calls the API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    """Login name; also matched against the commits' git authors (name, email) to refuse self-approval."""
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(Text)
    """A salted slow hash (never the password); NULL for token-only users."""
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    github_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The user's stable numeric id on GitHub (`tidegate user link`): how PR reviews and verified commit
    authors are matched to this user (logins can be renamed and reused; ids cannot)."""
    gitlab_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    gitea_id: Mapped[str | None] = mapped_column(String(64), unique=True)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                  passive_deletes=True)
    memberships: Mapped[list[GroupMember]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                          passive_deletes=True)


class Group(Base):
    """A named set of users; approval policies and role bindings name groups as `group:<name>`."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)

    members: Mapped[list[GroupMember]] = relationship(back_populates="group", cascade="all, delete-orphan",
                                                      passive_deletes=True)


class GroupMember(Base):
    """One user's membership of one group."""

    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete=CASCADE), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete=CASCADE), index=True)

    group: Mapped[Group] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class RoleBinding(Base):
    """Grants a role to `user:<name>` or `group:<name>`, everywhere or on one environment (`repo/env`)."""

    __tablename__ = "role_bindings"
    __table_args__ = (UniqueConstraint("subject", "role", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[Role] = mapped_column(WordEnum(Role))
    scope: Mapped[str] = mapped_column(String(255), default="*")
    """`*` for every environment, else `repository/environment`."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; `prefix` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete=CASCADE), index=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class DashboardSession(Base):
    """A signed-in browser: the dashboard's cookie names it, logout deletes it (only its SHA-256 is kept)."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete=CASCADE), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(Base):
    """A webhook delivery accepted once: a replayed delivery id, or the same body within the replay
    window, is ignored."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("host", "delivery_id"), UniqueConstraint("host", "body_digest"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[GitHost] = mapped_column(WordEnum(GitHost))
    delivery_id: Mapped[str] = mapped_column(String(255))
    repository_id: Mapped[int | None] = mapped_column(ForeignKey("repositories.id", ondelete=SET_NULL), index=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    body_digest: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of what the signature covers (the body; the generic receiver's timestamp and body);
    unique per host, NULL again once the replay window passed and the same bytes were accepted anew."""


class Preview(Base):
    """The preview of one pull request: its head, its one comment on the host, its status and body."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("repository_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete=CASCADE), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(255), default="")
    head_sha: Mapped[str] = mapped_column(String(64))
    base_ref: Mapped[str] = mapped_column(String(255), default="main")
    status: Mapped[PreviewStatus] = mapped_column(WordEnum(PreviewStatus), default=PreviewStatus.PENDING)
    comment_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(RedactedText(), default="")
    """The markdown comment as last posted (secrets masked, on write too)."""
    environments: Mapped[dict[str, Any]] = mapped_column(RedactedJSON(), default=dict)
    """Per affected environment: per stage summary and changes, or validation errors."""
    state: Mapped[str] = mapped_column(String(32), default="open")
    """open, closed or merged."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    held: Mapped[str | None] = mapped_column(Text)
    """Why the head is not planned yet (an author the host does not trust, a fork); NULL once planned."""
    go_ahead_sha: Mapped[str | None] = mapped_column(String(64))
    """The head a trusted member's `/tidegate preview` was given for; a newer head needs a new one."""
    go_ahead_by: Mapped[str | None] = mapped_column(String(255))


class ApprovalPolicyRow(Base):
    """An admin's approval policy for one `repository/environment`, enforced next to the repo's own.

    Keyed by names, not foreign keys, so a policy can be set before the repository is registered or
    the environment first polled (a first sync must not slip through before the admin gets there).
    """

    __tablename__ = "approval_policies"
    __table_args__ = (UniqueConstraint("repository", "environment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(253))
    environment: Mapped[str] = mapped_column(String(253))
    required: Mapped[bool] = mapped_column(default=True)
    min_approvals: Mapped[int] = mapped_column(Integer, default=1)
    approvers: Mapped[list[str]] = mapped_column(json_type(), default=list)
    updated_by: Mapped[str] = mapped_column(String(255), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommitIdentity(Base):
    """A Git host account the host itself vouches for as having touched a commit.

    Git author names and e-mails are whatever the committer typed; these are not: the sender of the
    push that brought the commit, the author of the pull request that merged it, and the commit's
    author/committer as the host's API resolved them (`user_id` empty: resolved to no account).
    """

    __tablename__ = "commit_identities"
    __table_args__ = (Index("ix_commit_identities_repository_id_sha", "repository_id", "sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete=CASCADE))
    sha: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    """push_sender, pr_author, commit_author or commit_committer."""
    host: Mapped[GitHost] = mapped_column(WordEnum(GitHost))
    user_id: Mapped[str] = mapped_column(String(64), default="")
    login: Mapped[str] = mapped_column(String(255), default="")
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredSecret(Base):
    """A secret an environment's repo refers to by name (`privateKeyRef.secret`, `{secretRef: …}`).

    `scope` is `*` (global, set by admins), `repository`, or `repository/environment`; a reference
    resolves to the most specific scope that holds its name and never sees another scope's secrets.
    The value is sealed; `fingerprint` is an HMAC of it under `salt` (random per row), so people can
    tell whether a value changed without the store holding a digest someone could brute-force.
    """

    __tablename__ = "stored_secrets"
    __table_args__ = (UniqueConstraint("name", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), index=True)
    scope: Mapped[str] = mapped_column(String(510), default="*")
    value: Mapped[Sealed] = mapped_column(SealedText())
    salt: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255), default="")
