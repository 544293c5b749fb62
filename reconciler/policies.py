"""Which approval rules a sync must satisfy: the admins' server-side policy and the repository's own.

A sync of revision R must satisfy, each on its own:

* the server-side policy of its `repository/environment` (set by admins through the API or the
  CLI, stored, audited; none by default), and
* the repository's `spec.approval` **at the environment's last applied revision** (the revision of
  its last succeeded sync) — or at R on its first sync, when nothing has been applied yet.

So a commit that rewrites `approval:` (adds itself to `approvers`, lowers `minApprovals`, turns
`required` off) is judged under the policy it wants to replace; the new policy governs the commits
after it. The pipeline's gate (`needs approval?`) and the approval decision read the same
`EffectivePolicy`, so they can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.repositories import load_at
from reconciler.runtime import Services
from repo_schema.loader import LoadedRepo
from repo_schema.models import ApprovalPolicy
from store import ApprovalPolicyRow, Environment, Repository, Revision, Sync, SyncLifecycle, utcnow
from store.queries import record_audit

NAME = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


class PolicyError(ValueError):
    """A server-side policy that cannot be stored; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PolicyUnavailable(RuntimeError):
    """The repository's policy at the revision that decides cannot be read: nothing may pass the gate."""


@dataclass(frozen=True)
class Rule:
    """One approval policy that applies to a sync, and where it comes from (for people to read)."""

    origin: str
    required: bool
    min_approvals: int
    approvers: tuple[str, ...]

    def admits(self, name: str, groups: frozenset[str]) -> bool:
        """Whether the rule's `approvers` name the user (an empty list names everyone allowed to approve)."""
        if not self.approvers:
            return True
        return any((kind == "user" and value == name) or (kind == "group" and value in groups)
                   for kind, _, value in (subject.partition(":") for subject in self.approvers))

    def describe(self) -> str:
        who = ", ".join(self.approvers) or "anyone with the approve permission"
        return f"{self.origin}: {self.min_approvals} of {who}"


@dataclass(frozen=True)
class EffectivePolicy:
    """Every rule a sync must satisfy; the gate is on when any of them requires approval."""

    rules: tuple[Rule, ...]
    base: str | None
    """The revision whose repository policy applies (the last applied one), None on a first sync."""

    @property
    def required(self) -> bool:
        return any(rule.required for rule in self.rules)

    @property
    def gating(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.required)


# --- the server-side policy ------------------------------------------------------------------------------

def server_policy(session: Session, repository: str, environment: str) -> ApprovalPolicyRow | None:
    query = select(ApprovalPolicyRow).where(ApprovalPolicyRow.repository == repository,
                                            ApprovalPolicyRow.environment == environment)
    return session.scalars(query).one_or_none()


def server_policies(session: Session) -> Sequence[ApprovalPolicyRow]:
    query = select(ApprovalPolicyRow).order_by(ApprovalPolicyRow.repository, ApprovalPolicyRow.environment)
    return session.scalars(query).all()


def parse_policy(required: bool, min_approvals: int, approvers: Sequence[str]) -> ApprovalPolicy:
    """The same checks the repository's `approval:` block gets (`approvers` required when `required`)."""
    try:
        return ApprovalPolicy.model_validate({"required": required, "minApprovals": min_approvals,
                                              "approvers": list(approvers)})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "approvers"
        raise PolicyError(where, f"{where}: {first['msg']}") from None


def set_server_policy(session: Session, repository: str, environment: str, policy: ApprovalPolicy,
                      actor: str) -> ApprovalPolicyRow:
    """Store (or replace) the admins' policy of `repository/environment`, audited."""
    for field, value in (("repository", repository), ("environment", environment)):
        if not NAME.match(value):
            raise PolicyError(field, f"{field}: {value!r} is not a repository or environment name")
    row = server_policy(session, repository, environment)
    if row is None:
        row = ApprovalPolicyRow(repository=repository, environment=environment)
        session.add(row)
    row.required, row.min_approvals, row.approvers = policy.required, policy.min_approvals, list(policy.approvers)
    row.updated_by, row.updated_at = actor, utcnow()
    session.flush()
    record_audit(session, actor=actor, action="approval_policy.set", target=f"{repository}/{environment}",
                 details={"required": policy.required, "minApprovals": policy.min_approvals,
                          "approvers": list(policy.approvers)})
    return row


def remove_server_policy(session: Session, repository: str, environment: str, actor: str) -> bool:
    row = server_policy(session, repository, environment)
    if row is None:
        return False
    session.delete(row)
    record_audit(session, actor=actor, action="approval_policy.removed", target=f"{repository}/{environment}")
    return True


# --- the effective policy ----------------------------------------------------------------------------------

def last_applied(session: Session, environment_id: int) -> Revision | None:
    """The revision of the environment's last succeeded sync: the state the environment is really in."""
    query = (select(Sync).where(Sync.environment_id == environment_id, Sync.status == SyncLifecycle.SUCCEEDED,
                                Sync.revision_id.is_not(None))
             .order_by(Sync.finished_at.desc(), Sync.id.desc()).limit(1))
    sync = session.scalars(query).first()
    return sync.revision if sync is not None else None


def effective_policy(services: Services, session: Session, environment: Environment, revision: str,
                     at_revision: LoadedRepo | None = None) -> EffectivePolicy:
    """The rules a sync of `environment` to `revision` must satisfy (see the module docstring).

    `at_revision` is the repository loaded at `revision` when the caller has it already."""
    repository = environment.repository
    base = last_applied(session, environment.id)
    rules: list[Rule] = []
    row = server_policy(session, repository.name, environment.name)
    if row is not None:
        rules.append(Rule(f"server policy of {repository.name}/{environment.name}", row.required, row.min_approvals,
                          tuple(row.approvers)))
    decider, loaded = revision, at_revision
    if base is not None:
        decider, loaded = base.sha, _load(services, repository, base.sha)
        if environment.name not in loaded.environments:  # not defined when last applied: judged as a first sync
            decider, loaded = revision, at_revision
    loaded = loaded or _load(services, repository, decider)
    spec = loaded.environments.get(environment.name)
    if spec is None:
        raise PolicyUnavailable(f"{repository.name} does not define environment {environment.name!r} at "
                                f"{decider[:12]}")
    approval = spec.spec.approval
    why = "last applied" if base is not None and decider == base.sha else "first sync"
    rules.append(Rule(f"repository policy at {decider[:12]} ({why})", approval.required, approval.min_approvals,
                      tuple(approval.approvers)))
    return EffectivePolicy(tuple(rules), base.sha if base is not None else None)


def _load(services: Services, repository: Repository, sha: str) -> LoadedRepo:
    try:
        _, loaded, invalid = load_at(services, repository, sha)
    except Exception as error:  # a missing mirror or a deleted commit: nothing can be judged, so nothing passes
        raise PolicyUnavailable(f"cannot read {repository.name}'s approval policy at {sha[:12]}: "
                                f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if loaded is None:
        raise PolicyUnavailable(f"{repository.name} at {sha[:12]} does not validate: "
                                f"{(invalid or '').splitlines()[0] if invalid else ''}")
    return loaded
