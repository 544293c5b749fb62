"""What the API accepts and returns: pydantic models, so FastAPI documents them in OpenAPI.

Nothing here has a field for a stage's outputs or a plan's payload: those columns are sealed and
hold kubeconfigs and saved plans, so the API cannot leak them even by mistake.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from store import (
    ApprovalDecision,
    ApprovalSource,
    DriftResolution,
    DriftStatus,
    Health,
    PreviewStatus,
    Role,
    Stage,
    StageStatus,
    SyncLifecycle,
    SyncStatus,
    SyncTrigger,
)

Name = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$", description="Letters, digits, . _ @ -; at most 64.")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Out):
    detail: str | list[dict[str, Any]] = Field(description="Why; for bad input, a list naming each field (loc).")


class GrantOut(Out):
    role: Role
    scope: str


class MeOut(Out):
    name: str
    email: str | None
    groups: list[str]
    grants: list[GrantOut]
    csrf_token: str | None = Field(description="Send as X-CSRF-Token on changes made with the session cookie.")


class RevisionOut(Out):
    sha: str
    ref: str
    author: str
    message: str
    committed_at: datetime


class SyncBrief(Out):
    id: int
    status: SyncLifecycle
    trigger: SyncTrigger
    revision: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class StageProgressOut(Out):
    done: int
    total: int
    unit: str = Field(description="`objects` or `hosts`.")


class StageStateOut(Out):
    stage: Stage
    status: StageStatus | None = Field(description="From the last sync; null when that sync did not reach it.")
    plan: str = Field(description="`+N ~M -K` as in pull request comments.")
    counts: dict[str, int] = Field(description="Apply results: created, configured, unchanged, deleted, skipped.")
    outcomes: dict[str, str] = Field(description="Changed addresses and what apply did to each.")
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    log: str | None = Field(default=None, description="The stage's log (secrets masked); only in sync detail.")
    skipped: str | None = Field(default=None, description="Why a skipped stage did not run, when it was left "
                                                           "out: e.g. `inputs unchanged since sync #12`.")
    progress: StageProgressOut | None = Field(default=None, description="While the stage applies: how far it "
                                              "is (Kubernetes objects applied, Ansible hosts through the task).")


class EnvironmentOut(Out):
    repository: str
    name: str
    key: str = Field(description="`repository/environment`, as in role binding scopes.")
    revision: RevisionOut | None = Field(description="The synced revision.")
    desired_revision: RevisionOut | None
    sync_status: SyncStatus
    health: Health = Field(description="From the last look at the live world; Unknown when it is stale or "
                                       "Tidegate has not looked since it started (`observation` says which).")
    observed_at: datetime | None = Field(default=None, description="When the live world was last read.")
    observation: str = Field(default="", description="Why health is Unknown, or what the last look could not see.")
    auto_sync_paused: bool
    open_drift_reports: int
    open_drift_items: int
    last_sync: SyncBrief | None
    pending_approval: int | None = Field(description="Id of a sync of this environment awaiting approval.")


class EnvironmentDetail(EnvironmentOut):
    stages: list[StageStateOut] = Field(description="The three-stage pipeline as the last sync left it.")


class RepositoryOut(Out):
    name: str
    url: str = Field(description="Clone URL with any user:password part removed.")
    branch: str
    head: str | None
    last_polled_at: datetime | None
    poll_error: str | None
    environments: list[str]


class ApprovalOut(Out):
    user: str
    decision: ApprovalDecision
    source: ApprovalSource
    comment: str
    created_at: datetime


class SyncRowOut(SyncBrief):
    """A line of an environment's sync history: the brief plus what people ask of it next."""

    commit_subject: str = Field(default="", description="The first line of the synced commit's message.")
    rollback: bool = Field(default=False, description="Asked for as a rollback (a sync of a given revision, "
                                                      "which paused auto-sync); its trigger is `manual`.")
    approved_by: list[str] = Field(default_factory=list,
                                   description="Who approved its plan (distinct, first approval first).")
    approved_at: datetime | None = Field(default=None, description="When the last approver approved.")
    fingerprint: str | None = Field(default=None, description="The fingerprint of the plan it carries.")


class SyncOut(SyncRowOut):
    environment: str
    revision_detail: RevisionOut | None
    plan_id: int | None
    stages: list[StageStateOut]
    approvals: list[ApprovalOut]


class ChangeOut(Out):
    address: str
    action: str
    diff: str


class PlanStageOut(Out):
    stage: str
    summary: str
    deferred: bool
    fingerprint: str | None
    unchanged: int
    changes: list[ChangeOut]
    planned_after_apply: bool = Field(default=False, description="A stage that was deferred, planned once "
                                                                 "infrastructure applied (its changes are that plan).")
    skipped: str | None = Field(default=None, description="Why the stage was left out of the plan (not planned, "
                                                           "not applied): e.g. `inputs unchanged since sync #12`.")


class PlanOut(Out):
    id: int
    environment: str
    revision: RevisionOut
    fingerprint: str
    superseded: bool
    created_at: datetime
    stages: list[PlanStageOut]


class PendingApprovalOut(Out):
    sync: SyncBrief
    environment: str
    revision: RevisionOut | None
    plan_id: int | None
    fingerprint: str | None
    plan_summary: dict[str, str]
    approvals: list[ApprovalOut]


class DriftItemOut(Out):
    id: int
    stage: Stage
    address: str
    field: str
    desired: Any = Field(description="The desired value (JSON); null when absent.")
    live: Any = Field(description="The live value (JSON); null when absent.")


class ResourceOut(Out):
    """One managed thing of the live resource tree."""

    stage: Stage
    address: str = Field(description="Terraform address, Ansible host, or `group/kind/namespace/name`.")
    kind: str = Field(description="`Deployment`, `aws_instance`, `host`, ...")
    name: str
    group: str = Field(description="The workload, the Terraform module (empty: the root module); empty for a host.")
    sync: str = Field(description="`Synced`, `OutOfSync` (an open drift item names it) or `Missing`.")
    health: Health | None = Field(description="Kubernetes objects: kstatus health at the last look.")
    reason: str = ""
    result: str | None = Field(description="What the last apply did to it; a host's last result (ok, failed, "
                                           "unreachable).")
    drifted: list[str] = Field(default_factory=list, description="The fields its open drift items name.")


class ResourceTreeOut(Out):
    environment: str
    observed_at: datetime | None = Field(description="When the live objects were last read.")
    sources: dict[str, str] = Field(description="Per stage, where its list comes from.")
    resources: list[ResourceOut]


class LiveObjectOut(Out):
    environment: str
    stage: Stage
    address: str
    live: dict[str, Any] | None = Field(description="The object as the target holds it now (Secret values masked, "
                                                    "no managedFields); null when it is not there.")
    error: str | None = Field(description="Why it could not be read.")
    drift: list[DriftItemOut] = Field(description="Its open drift items: desired against live, per field.")


class DriftReportOut(Out):
    id: int
    environment: str
    revision: str
    status: DriftStatus
    resolution: DriftResolution | None
    created_at: datetime
    resolved_at: datetime | None
    items_by_stage: dict[str, int]
    accepted_by: str | None = Field(default=None, description="Who accepted the live state (audit actor).")
    accepted_comment: str = Field(default="", description="Why, as they said when accepting.")
    heal_sync_id: int | None = Field(default=None, description="The sync a heal requested, if any.")


class DriftReportDetail(DriftReportOut):
    items: list[DriftItemOut]


class AuditOut(Out):
    id: int
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    at: datetime


class TokenOut(Out):
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class UserOut(Out):
    name: str
    email: str | None
    disabled: bool
    has_password: bool
    groups: list[str]
    tokens: list[TokenOut]
    github_id: str | None = None
    gitlab_id: str | None = None
    gitea_id: str | None = None


class UserIn(In):
    name: str = Name
    email: str | None = Field(default=None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    groups: list[Annotated[str, Name]] = Field(default_factory=list, max_length=50)


HostId = Field(default=None, pattern=r"^([0-9]{1,20})?$", description="The stable numeric user id on that Git "
               "host (how PR reviews and verified commit authors are matched); \"\" unlinks.")


class UserPatch(In):
    email: str | None = Field(default=None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    disabled: bool | None = None
    github_id: str | None = HostId
    gitlab_id: str | None = HostId
    gitea_id: str | None = HostId


class TokenIn(In):
    name: str = Field(default="default", min_length=1, max_length=255)


class TokenCreated(Out):
    name: str
    prefix: str
    token: str = Field(description="Shown once; only its SHA-256 is stored.")


class GroupOut(Out):
    name: str
    members: list[str]


class GroupIn(In):
    name: str = Name


class MemberIn(In):
    user: str = Name


class RoleBindingOut(Out):
    id: int
    subject: str
    role: Role
    scope: str


class RoleBindingIn(In):
    subject: str = Field(pattern=r"^(user|group):[A-Za-z0-9._@-]{1,64}$", description="user:NAME or group:NAME")
    role: Role
    scope: str = Field(default="*", pattern=r"^(\*|[A-Za-z0-9._-]{1,253}/[A-Za-z0-9._-]{1,253})$")


class ApprovalPolicyIn(In):
    """The admins' approval policy of one environment: the same block as the repository's `approval:`."""

    required: bool = True
    min_approvals: int = Field(default=1, ge=1, le=10)
    approvers: list[Annotated[str, Field(pattern=r"^(user|group):[A-Za-z0-9._@-]{1,64}$")]] = Field(
        default_factory=list, max_length=100, description="user:NAME or group:NAME; required when `required`.")


class ApprovalPolicyOut(Out):
    repository: str
    environment: str
    required: bool
    min_approvals: int
    approvers: list[str]
    updated_by: str
    updated_at: datetime


class SecretIn(In):
    """A stored secret's value and scope. The value is write-only: no response ever carries it."""

    value: SecretStr = Field(description="The secret's value (write-only; at most 1 MiB).")
    repository: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,253}$",
                                   description="Visible to this repository only (default: global, admins on *).")
    environment: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,253}$",
                                    description="Visible to this environment of `repository` only.")


class SecretOut(Out):
    """What may be shown about a stored secret: never its value."""

    name: str
    scope: str = Field(description="`*` (global), `repository` or `repository/environment`.")
    fingerprint: str = Field(description="Keyed digest: changes when the value changes, reveals nothing.")
    updated_at: datetime
    updated_by: str


class SyncRequestIn(In):
    revision: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$",
                                 description="A commit to sync (a rollback; pauses auto-sync). Default: desired.")


class DecisionIn(In):
    comment: str = Field(default="", max_length=2000)
    as_user: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]{1,64}$",
                                description="Decide as this user (admins on * only; audited as `admin X as Y`). "
                                "The user must pass every rule themself.")


class DriftAcceptIn(In):
    comment: str = Field(default="", max_length=2000, description="Why the live state is kept (audited).")


class DecisionOut(Out):
    sync_id: int
    fingerprint: str
    approvals: int
    required: int
    approved: bool
    status: SyncLifecycle
    detail: str = Field(default="", description="Per approval rule: approvals counted of approvals needed.")
    queued: bool = Field(default=True, description="False when the broker was down: the decision is recorded "
                         "and the sweeper queues the apply once the broker is back (answered 202).")


class ActionOut(Out):
    message: str
    sync_id: int | None = None


class PreviewEnvironmentOut(Out):
    name: str
    stages: list[PlanStageOut]
    errors: dict[str, str]


class PreviewOut(Out):
    id: int
    repository: str
    number: int = Field(description="The pull request's number on the Git host.")
    title: str
    author: str
    head_sha: str
    base_ref: str
    status: PreviewStatus
    state: str = Field(description="open, closed or merged.")
    updated_at: datetime
    environments: list[PreviewEnvironmentOut] = Field(description="Only the environments the caller may read.")
    held: str | None = Field(default=None, description="Why the head is not planned: it waits for a member's "
                             "`/tidegate preview SHA` (an author the host does not trust, or a fork).")
    go_ahead_by: str | None = Field(default=None, description="Who let the current head be planned, if anyone.")
