"""Pull request previews: what merging a PR would do to every environment it affects, before anyone merges.

For the PR's head revision a preview validates and renders the whole repo (every issue, with
file:line, fails it), finds the environments whose read set covers a path changed between the PR
base and its head, and plans every stage of each of them exactly as a sync would (same contexts,
same providers, the environment's last applied outputs), without applying anything. The result is
one markdown comment on the PR, created once and edited in place on each new push, and a commit
status that goes `pending` → `success` / `failure` with a link to the preview's dashboard page.

Previews never block applies. They take no environment lock, run in their own artifacts and
Terraform workspaces (`data_dir/previews/<repo>/pr-<n>/`), and plan Terraform with `-lock=false`
(the stage setting `lock: False`), as Atlantis' plans do: a plan only reads the state, so taking
the state lock for writes would only make a concurrent apply wait on a preview. The price is that a
preview racing an apply may show a plan against the state just before that apply; the next push,
and the merged revision's own plan (which does lock), show the truth.

Stages that need outputs of an infrastructure that does not exist yet (a first sync's cluster and
nodes) are shown as "planned after infrastructure applies", as the sync's own plan shows them.

Planning runs the PR's code (Terraform, Ansible, kustomize, Jinja), so a head is planned only when
its author is trusted for the repository — the host says they can push to it, and the head is not
from a fork — or when a trusted member commented `/tidegate preview` for exactly that head (as CI
systems gate first-time contributors). Otherwise the preview waits: its row, its comment and its
commit status say so, and nothing from the pull request runs. A new push needs a new go-ahead.
Each environment's plan keeps its content fingerprint, which PR review approvals are compared with
(`reconciler.hosts.approvals`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from redis.exceptions import LockError
from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.stage import Stage, StageContext
from reconciler import pipeline
from reconciler.contexts import Run
from reconciler.desired import check_checkout
from reconciler.errors import Transient
from reconciler.hosts import CommitStatus, GitHostClient, HostError, HostUser, client_for
from reconciler.plans import discard_artifacts
from reconciler.repositories import source_for
from reconciler.runtime import Services
from reconciler.session import EnvironmentSession, recorded_outputs, session_of
from reconciler.sources.git import GitSource, SourceError
from reconciler.sources.paths import affected_between
from reconciler.targets import Connection
from repo_schema.loader import LoadedRepo, check_repo
from repo_schema.models import PreviewSpec
from store import Environment, Preview, PreviewStatus, Repository, utcnow
from store.queries import record_audit
from store.redaction import redact, remember

log = logging.getLogger(__name__)

PREVIEW_LOCK_SECONDS = 900
"""How long one preview may hold its PR (and how long the next waits): a plan of every affected
environment's three stages takes well under this; a dead worker's lock expires after it."""
MAX_COMMENT = 60_000
"""Characters of one comment (GitHub refuses bodies over 65,536); diffs are cut to fit."""
MAX_DIFF = 4_000
"""Characters of one change's diff shown in the comment; the dashboard shows the rest."""
STAGE_TITLES = {Stage.INFRASTRUCTURE: "Terraform changes by address",
                Stage.CONFIGURATION: "Ansible changes per host/task",
                Stage.WORKLOADS: "Kubernetes diff per object"}


class PreviewRequest(BaseModel):
    """A PR head to preview, as a webhook receiver enqueues it (JSON through Celery)."""

    repository_id: int
    number: int = Field(gt=0)
    head_sha: str = Field(pattern=r"^[0-9a-f]{7,64}$")
    base_ref: str = ""
    base_sha: str | None = None
    title: str = ""
    author: str = ""
    author_id: str = ""
    """The PR author's stable id on the host (GitLab's membership check needs it)."""
    fork: bool = False
    """The head lives in another repository than the base: never trusted without a go-ahead."""
    public_url: str = "http://127.0.0.1:8080"


class GoAheadRequest(BaseModel):
    """A `/tidegate preview [SHA]` comment on a PR, as a webhook receiver enqueues it."""

    repository_id: int
    number: int = Field(gt=0)
    commenter: str = Field(min_length=1, max_length=255)
    commenter_id: str = Field(default="", max_length=64)
    sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,64}$")
    """The head the go-ahead is for: named in the comment, or the head the host's payload gave."""
    public_url: str = "http://127.0.0.1:8080"


class EnvironmentPreview(BaseModel):
    """One environment's stage plans (the summary the API and UI show), per-stage errors, the content
    fingerprint of the plan (None when a stage failed), and per stage whose credentials planned it:
    `preview` (the read-only ones of spec.preview) or `environment`."""

    stages: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    credentials: dict[str, str] = Field(default_factory=dict)


class Report(BaseModel):
    """What a preview found: validation errors, or a plan per affected environment."""

    head_sha: str
    changed_paths: list[str] | None = None
    validation: list[str] = Field(default_factory=list)
    environments: dict[str, EnvironmentPreview] = Field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> PreviewStatus:
        if self.error is not None:
            return PreviewStatus.ERROR
        if self.validation or any(env.errors for env in self.environments.values()):
            return PreviewStatus.FAILURE
        return PreviewStatus.SUCCESS


class PreviewOutcome(BaseModel):
    """What `run` did: the preview row, its status, the comment on the host, and what it skipped."""

    preview_id: int
    status: PreviewStatus
    comment_id: str | None = None
    environments: list[str] = Field(default_factory=list)
    superseded: bool = False
    posted: bool = False
    held: str | None = None
    """Why the head was not planned (it waits for a trusted member's go-ahead)."""


class GoAheadOutcome(BaseModel):
    """Whether a `/tidegate preview` comment was honoured, and the preview it ran."""

    accepted: bool
    reason: str = ""
    preview: PreviewOutcome | None = None


# --- the flow ---------------------------------------------------------------------------------------

def run(services: Services, request: PreviewRequest) -> PreviewOutcome:
    """Preview the PR head: pending status, plan, one comment (edited in place), final status.

    One preview of a PR at a time (a Redis lock per repository and PR): two at once would share the
    PR's work directory, and both could find no Tidegate comment yet and each create one. A second
    delivery for the PR waits for the first, then finds its comment and edits it."""
    key = f"tidegate:lock:preview:{request.repository_id}:{request.number}"
    lock = services.redis.lock(key, timeout=PREVIEW_LOCK_SECONDS, blocking_timeout=PREVIEW_LOCK_SECONDS)
    if not lock.acquire():
        raise Transient(f"a preview of pull request #{request.number} is still running")
    try:
        return _run(services, request)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def _run(services: Services, request: PreviewRequest) -> PreviewOutcome:
    with services.database.session() as session:
        repository = session.get_one(Repository, request.repository_id)
        row = _start(session, request)
        preview_id, comment_id, go_ahead = row.id, row.comment_id, row.go_ahead_sha
        host = client_for(repository, services.secrets)
        snapshot = _snapshot(repository)
    link = f"{request.public_url.rstrip('/')}/previews/{preview_id}"
    held = held_because(host, request, go_ahead)
    if held is not None:
        return _hold(services, host, request, preview_id, comment_id, link, held)
    # Planned on a member's go-ahead, but its author is still not trusted: what would run as the
    # service user rather than sealed as the runner (a `local` Ansible connection) is refused.
    untrusted = go_ahead == request.head_sha and held_because(host, request, None) is not None
    _post_status(host, request.head_sha, CommitStatus(state=PreviewStatus.PENDING, target_url=link,
                                                      description="Tidegate is planning the affected environments"))
    try:
        report = compute(services, snapshot, request, _workdir(services, snapshot.name, request.number),
                         untrusted=untrusted)
    except (SourceError, OSError) as error:
        log.warning("preview %s#%s: %s", snapshot.name, request.number, error)
        report = Report(head_sha=request.head_sha, error=str(error))
    body = redact(markdown(report, request, link))  # what goes to the host is masked like what is stored
    with services.database.session() as session:
        current = session.get_one(Preview, preview_id)
        if current.head_sha != request.head_sha:
            log.info("preview %s#%s: %s was superseded by %s", snapshot.name, request.number,
                     request.head_sha[:12], current.head_sha[:12])
            return PreviewOutcome(preview_id=preview_id, status=report.status, superseded=True)
        comment_id = current.comment_id or comment_id
    posted_id = _post_comment(host, request.number, body, comment_id)
    _post_status(host, request.head_sha, CommitStatus(state=report.status, target_url=link,
                                                      description=redact(describe(report))))
    with services.database.session() as session:
        current = session.get_one(Preview, preview_id)
        current.status, current.body, current.updated_at, current.held = report.status, body, utcnow(), None
        current.environments = {name: env.model_dump(mode="json") for name, env in report.environments.items()}
        current.comment_id = posted_id or current.comment_id
        comment_id = current.comment_id
    return PreviewOutcome(preview_id=preview_id, status=report.status, comment_id=comment_id,
                          environments=list(report.environments), posted=posted_id is not None)


def held_because(host: GitHostClient | None, request: PreviewRequest, go_ahead: str | None) -> str | None:
    """Why the head must not be planned yet, or None: its author is trusted, or a member let it go."""
    if go_ahead is not None and go_ahead == request.head_sha:
        return None
    author = request.author or "the author"
    if request.fork:
        return "the head comes from a fork"
    if host is None:
        return f"no Git host API is configured to say whether {author} may push to the repository"
    try:
        trusted = host.can_push(HostUser(login=request.author, id=request.author_id))
    except HostError as error:
        return f"the host could not say whether {author} may push to the repository ({error})"
    return None if trusted else f"{author} cannot push to the repository (no member or collaborator with write access)"


def _hold(services: Services, host: GitHostClient | None, request: PreviewRequest, preview_id: int,
          comment_id: str | None, link: str, reason: str) -> PreviewOutcome:
    """Nothing from the PR runs: the row, the comment and the commit status say what would let it."""
    command = f"/tidegate preview {request.head_sha[:12]}"
    body = "\n".join([f"### ⏸️ Tidegate preview of `{request.head_sha[:12]}` waits", "",
                      f"Not planned: {reason}. Planning runs the pull request's Terraform, Ansible and templates, "
                      "so nothing of it was run.", "",
                      f"A member who can push to the repository may comment `{command}` to plan this head. "
                      "A new push needs a new go-ahead.", "",
                      f"[Open this preview in Tidegate]({link}) · waiting at `{request.head_sha[:12]}`"])
    _post_status(host, request.head_sha, CommitStatus(state=PreviewStatus.PENDING, target_url=link,
                                                      description=f"Waiting for a member's `{command}`"))
    posted_id = _post_comment(host, request.number, body, comment_id)
    with services.database.session() as session:
        current = session.get_one(Preview, preview_id)
        if current.head_sha != request.head_sha:
            return PreviewOutcome(preview_id=preview_id, status=PreviewStatus.PENDING, superseded=True, held=reason)
        current.status, current.body, current.held, current.updated_at = PreviewStatus.PENDING, body, reason, utcnow()
        current.environments = {}
        current.comment_id = posted_id or current.comment_id
        comment_id = current.comment_id
    log.info("preview #%s at %s waits: %s", request.number, request.head_sha[:12], reason)
    return PreviewOutcome(preview_id=preview_id, status=PreviewStatus.PENDING, comment_id=comment_id,
                          posted=posted_id is not None, held=reason)


def go_ahead(services: Services, request: GoAheadRequest) -> GoAheadOutcome:
    """A `/tidegate preview` comment: if a trusted member gave it for the PR's current head, that
    head may be planned (once: a newer push waits again), and it is planned now."""
    with services.database.session() as session:
        repository = session.get_one(Repository, request.repository_id)
        host, name, kind = client_for(repository, services.secrets), repository.name, repository.host.value
    if host is None:
        return GoAheadOutcome(accepted=False, reason="the repository names no Git host API to check the commenter")
    try:
        trusted = host.can_push(HostUser(login=request.commenter, id=request.commenter_id))
        pr = host.pull_request(request.number)
    except HostError as error:
        return GoAheadOutcome(accepted=False, reason=f"the host could not be asked: {error}")
    if not trusted:
        return GoAheadOutcome(accepted=False, reason=f"{request.commenter} cannot push to the repository")
    if pr.state != "open":
        return GoAheadOutcome(accepted=False, reason=f"pull request #{request.number} is {pr.state}")
    if request.sha is not None and not pr.head_sha.startswith(request.sha):
        return GoAheadOutcome(accepted=False, reason=f"{request.sha[:12]} is not the head of #{request.number} any "
                              f"more ({pr.head_sha[:12]}): a new push needs a new go-ahead")
    with services.database.session() as session:
        row = session.scalars(select(Preview).where(Preview.repository_id == request.repository_id,
                                                    Preview.number == request.number)).one_or_none()
        if row is None:
            row = Preview(repository_id=request.repository_id, number=request.number, head_sha=pr.head_sha,
                          author=pr.author[:255])
            session.add(row)
        row.go_ahead_sha, row.go_ahead_by = pr.head_sha, request.commenter[:255]
        record_audit(session, actor=f"{kind}:{request.commenter}", action="preview.go_ahead",
                     target=f"{name}#{request.number}", details={"sha": pr.head_sha})
        title = row.title
    preview = run(services, PreviewRequest(repository_id=request.repository_id, number=request.number,
                                           head_sha=pr.head_sha, base_ref=pr.base_ref, title=title, author=pr.author,
                                           author_id=pr.author_id, public_url=request.public_url))
    return GoAheadOutcome(accepted=True, preview=preview)


def _start(session: Session, request: PreviewRequest) -> Preview:
    """The PR's preview row, now about this head and pending."""
    row = session.scalars(select(Preview).where(Preview.repository_id == request.repository_id,
                                                Preview.number == request.number)).one_or_none()
    if row is None:
        row = Preview(repository_id=request.repository_id, number=request.number)
        session.add(row)
    row.head_sha, row.status, row.state, row.updated_at = request.head_sha, PreviewStatus.PENDING, "open", utcnow()
    row.title = request.title or row.title or ""
    row.author = request.author or row.author or ""
    row.base_ref = request.base_ref or row.base_ref or "main"
    session.flush()
    return row


def _snapshot(repository: Repository) -> Repository:
    """A detached copy of what planning needs, so no session stays open while Terraform runs."""
    copy = Repository(id=repository.id, name=repository.name, url=repository.url, branch=repository.branch)
    copy.credentials, copy.head_sha = repository.credentials, repository.head_sha
    return copy


def _workdir(services: Services, repository: str, number: int) -> Path:
    return services.data_dir / "previews" / repository / f"pr-{number}"


def _post_status(host: GitHostClient | None, sha: str, status: CommitStatus) -> None:
    if host is None:
        return
    try:
        host.set_status(sha, status)
    except HostError as error:
        log.warning("commit status %s on %s not set: %s", status.state, sha[:12], error)


def _post_comment(host: GitHostClient | None, number: int, body: str, comment_id: str | None) -> str | None:
    if host is None:
        return None
    try:
        return host.upsert_comment(number, body, comment_id)
    except HostError as error:
        log.warning("preview comment on #%s not posted: %s", number, error)
        return None


# --- computing ----------------------------------------------------------------------------------------

def compute(services: Services, repository: Repository, request: PreviewRequest, workdir: Path, *,
            untrusted: bool = False) -> Report:
    """Validate and render the head, then plan each affected environment without applying
    (`untrusted`: the head's author is not trusted, it runs on a member's go-ahead)."""
    source = source_for(services, repository)
    head = _fetched(source, request.head_sha)
    root = source.checkout(head, services.checkouts / repository.name)
    result = check_checkout(root, cache_dir=services.render_cache, revision=head)
    if result.issues or result.repo is None:
        return Report(head_sha=head, validation=[str(issue) for issue in result.issues])
    changed, names, base = _affected(services, source, repository, request, result.repo)
    report = Report(head_sha=head, changed_paths=changed)
    for name in result.repo.order():
        if name in names:
            loaded = session_of(services, Run(repository.name, name, head, root, workdir / name), result.repo,
                                result.environments[name])
            trusted = base.environments[name].spec.preview if base and name in base.environments else None
            report.environments[name] = plan_environment(services, repository.id, loaded, workdir, trusted,
                                                         untrusted=untrusted)
    return report


def _fetched(source: GitSource, sha: str) -> str:
    if not source.has_commit(sha):
        source.fetch(want=sha)
    return source.resolve(sha)


def _affected(services: Services, source: GitSource, repository: Repository, request: PreviewRequest,
              head: LoadedRepo) -> tuple[list[str] | None, set[str], LoadedRepo | None]:
    """(changed paths, affected environments, the repo at the base); every environment when the
    base is unknown.

    The paths are those of `git diff base head`; with a base that moved on since the PR branched
    off, this over-approximates (an extra environment is previewed, none is missed). What the PR
    must not decide for itself (its preview credentials) is read from the base."""
    base = request.base_sha or (repository.head_sha if request.base_ref in ("", repository.branch) else None)
    if base is None:
        return None, set(head.environments), None
    try:
        base = _fetched(source, base)
        changed = source.changed_paths(base, request.head_sha)
    except SourceError:
        return None, set(head.environments), None
    old, _ = check_repo(source.checkout(base, services.checkouts / repository.name))
    return changed, affected_between(old, head, changed), old


def plan_environment(services: Services, repository_id: int, loaded: EnvironmentSession,
                     workdir: Path, trusted: PreviewSpec | None = None, *,
                     untrusted: bool = False) -> EnvironmentPreview:
    """Every stage of one environment planned as a sync plans it (`pipeline.plan_stages`), against
    what its stages last recorded, with the read-only credentials `trusted` (spec.preview at the
    base) names where it names any; each stage's failure is shown, the others still planned."""
    with services.database.session() as session:
        env = session.scalars(select(Environment).where(Environment.repository_id == repository_id,
                                                        Environment.name == loaded.run.environment)).one_or_none()
        if env is not None:
            loaded.recorded = recorded_outputs(services, session, env.id)
    loaded.run.artifacts.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials: dict[str, str] = {}

    def adapt(stage: Stage, context: StageContext[Any]) -> StageContext[Any]:
        context, credentials[stage.value] = _with_preview_credentials(services, loaded, stage, context, trusted)
        return preview_context(context, workdir, untrusted=untrusted)

    failures: dict[Stage, str] = {}
    plan = pipeline.plan_stages(services, loaded, adapt=adapt, errors=failures)
    discard_artifacts(plan)  # a preview is never applied: its saved plan files are not kept
    errors = {stage.value: message for stage, message in failures.items()}
    return EnvironmentPreview(stages=plan.summary(), errors=errors,
                              fingerprint=None if errors else plan.content_fingerprint, credentials=credentials)


def _with_preview_credentials(services: Services, loaded: EnvironmentSession, stage: Stage, context: StageContext[Any],
                              trusted: PreviewSpec | None) -> tuple[StageContext[Any], str]:
    """The context with only the stage's read-only preview credentials, when the base names them."""
    section = getattr(trusted, stage.value, None) if trusted is not None else None
    if section is None:
        return context, "environment"
    refs = section.model_dump(by_alias=True, mode="json")
    connection = services.targets.preview(loaded.run.repository, loaded.run.environment, stage.value,
                                          Connection(context.settings, context.credentials), refs)
    remember(*connection.credentials.values())
    return replace(context, settings=dict(connection.settings), credentials=dict(connection.credentials)), "preview"


def preview_context(context: StageContext[Any], workdir: Path, *, untrusted: bool = False) -> StageContext[Any]:
    """The sync's context, with the preview's own Terraform workspaces and no state lock taken;
    for an untrusted author's head, stages refuse what would run unsealed (`untrusted_head`)."""
    settings: dict[str, Any] = {**context.settings, "lock": False,
                                "terraform_workspaces": str(workdir / "workspaces"), "untrusted_head": untrusted}
    return replace(context, settings=settings)


# --- the comment ----------------------------------------------------------------------------------------

def markdown(report: Report, request: PreviewRequest, link: str) -> str:
    """The PR comment: per environment a summary line per stage, then collapsible details."""
    icon = {PreviewStatus.SUCCESS: "✅", PreviewStatus.FAILURE: "❌", PreviewStatus.ERROR: "⚠️"}.get(report.status, "")
    lines = [f"### {icon} Tidegate preview of `{report.head_sha[:12]}`", ""]
    if report.error is not None:
        lines += ["The preview could not run:", "", _fenced(report.error, "")]
    elif report.validation:
        lines += _validation(report.validation)
    elif not report.environments:
        lines += ["No environment reads the paths this pull request changes: nothing to plan."]
    else:
        lines += [f"Affected environments: {', '.join(f'`{n}`' for n in report.environments)}. "
                  "Nothing was applied; plans were made without taking the Terraform state lock.", ""]
        for name, env in report.environments.items():
            lines += _environment(name, env, MAX_DIFF)
    lines += ["", f"[Open this preview in Tidegate]({link}) · updated for `{request.head_sha[:12]}`"]
    body = "\n".join(lines)
    if len(body) > MAX_COMMENT and report.environments:
        lines = lines[:2] + [line for name, env in report.environments.items()
                             for line in _environment(name, env, 0)] + lines[-2:]
        body = "\n".join(lines)
    return body[:MAX_COMMENT]


def _validation(errors: list[str]) -> list[str]:
    return [f"**Validation failed** with {len(errors)} error{'s' if len(errors) != 1 else ''} "
            "(file:line:column: field: message); nothing was planned.", "",
            "<details open><summary>Validation errors</summary>", "", _fenced("\n".join(errors), ""), "</details>"]


def _environment(name: str, env: EnvironmentPreview, max_diff: int) -> list[str]:
    words = []
    for stage in Stage:
        if stage.value in env.errors:
            words.append(f"**{stage.value}** failed")
        elif stage.value in env.stages:
            words.append(f"**{stage.value}** `{env.stages[stage.value]['summary']}`"
                         if not env.stages[stage.value].get("deferred")
                         else f"**{stage.value}** {env.stages[stage.value]['summary']}")
    lines = [f"#### `{name}`", " · ".join(words), ""]
    own = [stage for stage, used in env.credentials.items() if used == "environment"]
    if own:
        lines += [f"<sub>Planned with the environment's own credentials: {', '.join(own)} "
                  "(name read-only ones in `spec.preview`).</sub>", ""]
    for stage in Stage:
        if stage.value in env.errors:
            lines += [f"<details open><summary>{stage.value}: planning failed</summary>", "",
                      _fenced(env.errors[stage.value], ""), "</details>", ""]
        summary = env.stages.get(stage.value)
        if summary and not summary.get("deferred") and summary["changes"]:
            lines += _changes(stage, summary, max_diff)
    return lines


def _changes(stage: Stage, summary: Mapping[str, Any], max_diff: int) -> list[str]:
    changes = summary["changes"]
    lines = [f"<details><summary>{STAGE_TITLES[stage]} ({len(changes)})</summary>", ""]
    for change in changes:
        lines.append(f"- `{change['address']}`: **{change['action']}**")
        diff = str(change.get("diff") or "")
        if diff and max_diff:
            cut = diff[:max_diff] + ("\n… (cut; see the dashboard)" if len(diff) > max_diff else "")
            lines += ["", _fenced(cut, "diff"), ""]
    unchanged = summary.get("unchanged", 0)
    if unchanged:
        lines.append(f"- {unchanged} unchanged")
    lines += ["", "</details>", ""]
    return lines


def _fenced(text: str, language: str) -> str:
    """A code block whose fence is longer than any backtick run inside (a diff cannot close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def describe(report: Report) -> str:
    """The commit status description (hosts cut it at 140 characters)."""
    if report.error is not None:
        return "Tidegate could not run the preview"
    if report.validation:
        return f"Validation failed: {len(report.validation)} error(s)"
    failed = [f"{name} ({', '.join(env.errors)})" for name, env in report.environments.items() if env.errors]
    if failed:
        return ("Planning failed: " + "; ".join(failed))[:140]
    if not report.environments:
        return "No environment affected"
    parts = [f"{name} " + " ".join(str(stage.get("summary")) for stage in env.stages.values()
                                   if not stage.get("deferred"))
             for name, env in report.environments.items()]
    return ("Planned: " + "; ".join(parts))[:140]
