"""The one stage interface every provider implements, and the data that crosses it.

Terraform, Ansible and Kubernetes each implement three verbs over their own world:

* `plan(context) -> StagePlan`: no side effects on targets; lists changes per address;
* `apply(context, plan) -> StageResult`: executes exactly that plan, refuses a stale one;
* `observe(context) -> list[DriftItem]`: compares live with the last applied desired state.

The words (`create`, `update`, ...; `created`, `configured`, ...) are the README's vocabulary and
mean the same in code, API, UI and pull request comments.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from repo_schema.vocabulary import Health as Health  # re-exported: the one Health word
from repo_schema.vocabulary import Stage as Stage  # re-exported: the one Stage word


class Action(Enum):
    """What a plan would do to one address (not a StrEnum: `replace` would shadow str.replace)."""

    create = "create"
    update = "update"
    replace = "replace"
    delete = "delete"
    no_op = "no-op"

    def __str__(self) -> str:
        return self.value


class Outcome(StrEnum):
    """What an apply did to one address."""

    created = "created"
    configured = "configured"
    unchanged = "unchanged"
    deleted = "deleted"
    skipped = "skipped"


MASK = "(sensitive)"


@dataclass(frozen=True)
class Change:
    """One address's planned change; `diff` is human-readable with secrets already masked."""

    stage: Stage
    address: str
    action: Action
    diff: str = ""


S = TypeVar("S")


@dataclass(frozen=True)
class StageContext(Generic[S]):
    """Everything one stage run needs, as plain values: no Git, no Celery, no store.

    `spec` is the stage's own typed input, resolved once by the reconciler from the config repo
    and from earlier stages' recorded outputs (`TerraformSpec`, `ConfigurationInputs`,
    `WorkloadsInputs`): a provider reads fields, never the repo's camelCase. `workdir` is the
    rendered checkout of one revision; `credentials` and `settings` are connection settings the
    composition root injects (in sandbox mode: the sandbox's endpoint map). `artifacts` is where a
    run may keep files.
    """

    environment: str
    revision: str
    workdir: Path
    artifacts: Path
    spec: S
    credentials: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    superseded: Callable[[], str | None] | None = None
    """Asked now and then during a long wait that is not the stage's own work (a health wait): a
    reason to stop waiting — a newer revision of the environment is ready to plan — or None. What
    was written stays written; the stage says it stopped waiting and why."""
    on_line: Callable[[str], None] | None = None
    """Where a stage sends each line of its log the moment it has it (secrets already masked), so
    people can follow a long apply; the whole log is still returned in the `StageResult`. Called
    from any thread; None when nobody follows."""
    on_progress: Callable[[int, int, str], None] | None = None
    """Where a stage says how far its apply is, as `(done, total, unit)` — Kubernetes objects
    applied of those the plan writes, Ansible hosts through the running task — each time it
    changes, so progress shows counts (`up`, `sync --wait`). Called from any thread; None when
    nobody follows."""
    worker: str | None = None
    """Who runs this stage (the reconciler's worker identity, e.g. `host:pid`): a stage writes it
    where it leaves a mark that names its holder (Terraform's state lock `Who`), so that a lock
    left by a killed worker can be traced to that worker. None: an anonymous run (the CLI)."""
    worker_dead: Callable[[str], bool | None] | None = None
    """Asked about a worker named by something a stage finds held (a state lock): True when that
    worker is known dead (its heartbeat gone), False when it is alive, None when nobody knows.
    Only a True lets a stage break what the dead worker held; None here: nothing is ever broken."""


@dataclass
class StagePlan:
    """The changes of one stage, their digest, and what apply needs to execute exactly them."""

    stage: Stage
    changes: list[Change]
    digest: str
    artifact: Path | None = None
    live_state: str = ""
    """The live state an approval of this plan binds to (Terraform's state lineage and serial);
    empty when the digest already covers the live comparison (Kubernetes)."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return any(change.action is not Action.no_op for change in self.changes)

    def summary(self) -> str:
        """`+N ~M -K` as in pull request comments (replace counts as both + and -)."""
        counts = {action: 0 for action in Action}
        for change in self.changes:
            counts[change.action] += 1
        add = counts[Action.create] + counts[Action.replace]
        remove = counts[Action.delete] + counts[Action.replace]
        return f"+{add} ~{counts[Action.update]} -{remove}"


@dataclass
class StageResult:
    """What an apply did: per address outcome, the stage's outputs and a log with secrets masked."""

    stage: Stage
    outcomes: dict[str, Outcome]
    outputs: dict[str, Any] = field(default_factory=dict)
    sensitive_outputs: frozenset[str] = frozenset()
    log: str = ""
    succeeded: bool = True
    error: str | None = None
    stale: bool = False
    """Nothing was applied: the stage refused the plan as stale (it raised `StalePlan`)."""
    health: str | None = None
    """The environment's health as this stage saw it after applying (`Healthy`, `Progressing`,
    `Degraded`, ...), for stages that judge health; None for those that do not."""


class StageError(Exception):
    """The closed set of failures a stage's verbs raise; the reconciler acts on the class alone.

    Providers turn their own errors (Terraform's, Ansible's, the Kubernetes client's) into exactly
    one of these at their boundary, so nothing upstream recognises an error by its text or by a
    provider's class name."""


class Transient(StageError):
    """Nothing was changed and trying again later may work: a backend or API that did not answer,
    a lock someone else holds, a 429 or 5xx."""


class StalePlan(StageError):
    """The plan no longer matches what it was made against (the live state or the stage's inputs
    moved): nothing of it was applied; plan again."""


class StageFailed(StageError):
    """The stage cannot do what was asked; `partial` is what it found anyway — the changes a plan
    found on the hosts that answered, or the drift observed there — so callers keep it."""

    def __init__(self, message: str, partial: StagePlan | list[DriftItem] | None = None) -> None:
        super().__init__(message)
        self.partial = partial

    @property
    def drift(self) -> list[DriftItem]:
        return [item for item in self.partial if isinstance(item, DriftItem)] if isinstance(self.partial, list) else []


@dataclass(frozen=True)
class DriftItem:
    """A live difference from the last applied desired state."""

    stage: Stage
    address: str
    field: str
    desired: Any
    live: Any
    diff: str = ""


@dataclass(frozen=True)
class LiveChange:
    """Something a stage manages changed out of band: `reason` is modified, deleted or resync."""

    address: str
    reason: str
    fields: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)


class Watcher(Protocol):
    """A running live watch; the caller stops it."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class LiveHealth:
    """One managed thing's health as a stage read it live (a Health word and why), and the group
    it belongs to (a workload, a host)."""

    address: str
    health: str
    reason: str = ""
    group: str = ""


@runtime_checkable
class Assesses(Protocol):
    """A stage that can judge its managed objects' health from the live world (Kubernetes:
    kstatus). Stages without one add nothing to an environment's health but their errors."""

    def assess(self, context: StageContext[Any]) -> list[LiveHealth]: ...


@runtime_checkable
class ReadsLive(Protocol):
    """A stage that can show one managed object as its target holds it now (Kubernetes: the live
    object), for a person who opened it in the dashboard. None when the object is not there.
    Secret values never leave it: they are masked as in a diff."""

    def read_live(self, context: StageContext[Any], address: str) -> dict[str, Any] | None: ...


class StageProvider(Protocol):
    """The contract each provider's stage object satisfies."""

    name: Stage

    def plan(self, context: StageContext[Any]) -> StagePlan: ...

    def apply(self, context: StageContext[Any], plan: StagePlan) -> StageResult: ...

    def observe(self, context: StageContext[Any]) -> list[DriftItem]: ...

    def watch(self, context: StageContext[Any], on_change: Callable[[LiveChange], None]) -> Watcher | None:
        """Start watching what the stage manages, calling `on_change` on an out-of-band change; None
        when the stage has no live view (it is only observed on the drift schedule)."""
        ...


def digest(value: Any) -> str:
    """A stable sha256 of JSON-serialisable data (sorted keys), used for plan and input digests."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
