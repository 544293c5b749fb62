"""An environment plan's fingerprint, what keeps an approval, and its sealed round trip."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers.stage import Action, Change, Stage, StagePlan
from reconciler.plans import (
    ArtefactRefused,
    EnvironmentPlan,
    Unchanged,
    decode,
    encode,
    materialize,
    same_changes,
    summary_content_fingerprint,
)

INFRA, CONF, WORK = Stage.INFRASTRUCTURE, Stage.CONFIGURATION, Stage.WORKLOADS


def _plan(stage: Stage, *changes: tuple[str, Action, str], digest: str = "d", live: str = "s1") -> StagePlan:
    return StagePlan(stage, [Change(stage, a, act, diff) for a, act, diff in changes], digest, live_state=live,
                     artifact=Path("/tmp/x.tfplan") if stage is INFRA else None, details={"k": [1, 2]})


def test_the_fingerprint_moves_with_the_revision_the_changes_and_terraform_state() -> None:
    base = EnvironmentPlan("r1", {INFRA: _plan(INFRA, ("aws_vpc.this", Action.create, "+"))})
    same = EnvironmentPlan("r1", {INFRA: _plan(INFRA, ("aws_vpc.this", Action.create, "+"))})
    assert base.fingerprint == same.fingerprint
    assert base.fingerprint != EnvironmentPlan("r2", dict(base.stages)).fingerprint
    assert base.fingerprint != EnvironmentPlan("r1", {INFRA: _plan(INFRA, digest="other")}).fingerprint
    assert base.fingerprint != EnvironmentPlan("r1", {INFRA: _plan(INFRA, digest="d", live="s2")}).fingerprint


def test_the_content_fingerprint_is_the_same_plan_at_another_revision_and_the_summary_gives_it_too() -> None:
    """A PR head and its merge commit that plan the same changes against the same state agree on it."""
    head = EnvironmentPlan("head", {INFRA: _plan(INFRA, ("aws_vpc.this", Action.create, "+"))}, deferred={CONF: "i"})
    merged = EnvironmentPlan("merge", dict(head.stages), deferred={CONF: "i"})
    assert head.fingerprint != merged.fingerprint and head.content_fingerprint == merged.content_fingerprint
    assert summary_content_fingerprint(head.summary()) == head.content_fingerprint
    assert head.content_fingerprint != EnvironmentPlan("head", dict(head.stages), deferred={CONF: "j"}
                                                       ).content_fingerprint
    assert summary_content_fingerprint({}) is None
    assert summary_content_fingerprint({"workloads": {"summary": "+1 ~0 -0"}}) is None


@pytest.mark.parametrize(("first", "second", "same"), [
    ("serial-1", "serial-1", True), ("serial-1", "serial-2", False), ("", "", True)],
    ids=["same-state", "state-moved", "binds-no-live-state"])
def test_a_fingerprint_binds_the_live_state_the_stage_names_and_nothing_else(first: str, second: str,
                                                                            same: bool) -> None:
    """Terraform names its state serial; the Kubernetes stage names none (its digest covers the
    live comparison, and resourceVersions move with every status write): no stage is special-cased."""
    one = EnvironmentPlan("r1", {WORK: _plan(WORK, live=first)})
    two = EnvironmentPlan("r1", {WORK: _plan(WORK, live=second)})
    assert (one.fingerprint == two.fingerprint) is same


@pytest.mark.parametrize(("fresh", "keeps"), [
    ((("web/Deployment", Action.update, "replicas 3"),), True),
    ((("web/Deployment", Action.update, "a different diff text"),), True),
    ((("web/Deployment", Action.replace, "replicas 3"),), False),
    ((("web/Deployment", Action.update, ""), ("web/Service", Action.create, "")), False),
], ids=["same", "same-addresses-and-actions-other-diff", "action-changed", "address-added"])
def test_a_replanned_stage_keeps_its_approval_only_with_the_same_addresses_and_actions(
        fresh: tuple[tuple[str, Action, str], ...], keeps: bool) -> None:
    approved = _plan(WORK, ("web/Deployment", Action.update, "replicas 3"), ("web/ConfigMap", Action.no_op, ""))
    assert same_changes(approved, _plan(WORK, *fresh)) is keeps


def test_a_deferred_stage_is_fingerprinted_by_its_inputs_and_counts_as_a_change() -> None:
    plan = EnvironmentPlan("r1", {INFRA: _plan(INFRA)}, deferred={CONF: "inputs-1"})
    assert plan.has_changes
    assert plan.fingerprint != EnvironmentPlan("r1", {INFRA: _plan(INFRA)}, deferred={CONF: "inputs-2"}).fingerprint
    assert plan.summary()["configuration"]["deferred"] is True


def test_encode_and_decode_keep_everything_apply_needs() -> None:
    plan = EnvironmentPlan("r1", {INFRA: _plan(INFRA, ("aws_vpc.this", Action.create, "+ cidr")),
                                  WORK: _plan(WORK, ("a/B", Action.delete, "-"))}, deferred={CONF: "x"})
    again = decode(encode(plan))
    assert again.fingerprint == plan.fingerprint
    assert again.stages[INFRA].artifact is None and again.artefacts[INFRA].name == "tmp/x.tfplan"
    assert again.artefacts[INFRA].data is None, "a plan file gone before sealing is stored as missing"
    assert again.stages[WORK].changes[0].action is Action.delete
    assert again.stages[INFRA].details == {"k": [1, 2]}


def test_the_summary_lists_changes_but_not_no_ops() -> None:
    plan = EnvironmentPlan("r1", {WORK: _plan(WORK, ("a/B", Action.update, "~"), ("a/C", Action.no_op, ""))})
    summary = plan.summary()["workloads"]
    assert summary["summary"] == "+0 ~1 -0"
    assert [c["address"] for c in summary["changes"]] == ["a/B"] and summary["unchanged"] == 1


def _saved(tmp_path: Path, data: bytes = b"\x00binary plan") -> tuple[Path, EnvironmentPlan]:
    """A plan whose infrastructure stage saved a plan file in the planner's run directory."""
    run = tmp_path / "planner" / "runs" / "infra" / "production"
    saved = run / "terraform" / "production-plan-1.tfplan"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(data)
    return run, EnvironmentPlan("r1", {INFRA: StagePlan(INFRA, [], "d", artifact=saved, live_state="s1")})


def test_a_saved_plan_file_travels_in_the_payload_into_the_applying_workers_own_run_directory(
        tmp_path: Path) -> None:
    run, plan = _saved(tmp_path)
    approved_digest = plan.summary()["infrastructure"]["artifact_sha256"]
    payload = encode(plan, run)
    shutil.rmtree(tmp_path / "planner")  # the planning machine is gone
    again = decode(payload)
    assert not (tmp_path / "planner").exists(), "reading a plan back writes nothing"
    applying = tmp_path / "applier" / "runs" / "infra" / "production"
    written = materialize(again, INFRA, applying).artifact
    assert written == applying / "terraform" / "production-plan-1.tfplan"
    assert written.read_bytes() == b"\x00binary plan" and written.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(written.read_bytes()).hexdigest() == approved_digest == again.artefacts[INFRA].sha256
    assert again.summary()["infrastructure"]["artifact_sha256"] == approved_digest, "kept when asked again"
    assert decode(encode(again)).artefacts[INFRA] == again.artefacts[INFRA], "re-sealed as it was read"


def _tampered(payload: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = json.loads(payload)
    change(data["stages"]["infrastructure"]["artefact"])
    return json.dumps(data)


@pytest.mark.parametrize(("change", "refusal"), [
    (lambda a: a.update(data=base64.b64encode(b"\x00another plan").decode()), "does not match the sha256"),
    (lambda a: a.update(data="not base64!"), "does not match the sha256"),
    (lambda a: a.update(sha256=""), "does not match the sha256"),
    (lambda a: a.update(data=None), "is missing from the store"),
    (lambda a: a.update(name="../../elsewhere.tfplan"), "outside the run's directory"),
    (lambda a: a.update(name="/etc/elsewhere.tfplan"), "outside the run's directory"),
], ids=["other-bytes", "not-base64", "digest-removed", "bytes-missing", "climbs-out", "absolute"])
def test_a_missing_or_altered_saved_plan_file_is_refused_and_nothing_is_written(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], refusal: str) -> None:
    run, plan = _saved(tmp_path)
    stored = decode(_tampered(encode(plan, run), change))
    applying = tmp_path / "applier"
    with pytest.raises(ArtefactRefused, match=f"infrastructure: the saved plan file .* {refusal}"):
        materialize(stored, INFRA, applying)
    assert not applying.exists() and not (tmp_path / "etc").exists()


def test_a_plan_sealed_before_artefacts_were_digested_still_applies_its_own_bytes(tmp_path: Path) -> None:
    """Payloads written by the previous version kept the planner's path and the bytes, no digest."""
    legacy = json.dumps({"revision": "r1", "stages": {"infrastructure": {
        "stage": "infrastructure", "changes": [], "digest": "d", "live_state": "s1", "details": {},
        "artifact": "/var/lib/tidegate/runs/infra/production/terraform/p.tfplan",
        "artifact_data": base64.b64encode(b"old plan").decode()}}})
    written = materialize(decode(legacy), INFRA, tmp_path).artifact
    assert written == tmp_path / "terraform" / "p.tfplan" and written.read_bytes() == b"old plan"


def test_a_stage_without_a_saved_file_applies_its_details_as_planned(tmp_path: Path) -> None:
    """The workloads stage's rendered manifests are its details, sealed with the rest of the plan."""
    bodies = {"objects": [{"workload": "web", "body": {"kind": "ConfigMap", "data": {"mode": "x"}}}]}
    plan = EnvironmentPlan("r1", {WORK: StagePlan(WORK, [], "d", details=bodies)})
    assert materialize(decode(encode(plan)), WORK, tmp_path).details == bodies
    assert not tmp_path.joinpath("terraform").exists()


def test_a_stage_left_out_unchanged_survives_the_sealed_round_trip_and_says_why_in_the_summary() -> None:
    plan = EnvironmentPlan("r1", {WORK: _plan(WORK, ("apps/ConfigMap/web/settings", Action.update, "~"))},
                           unchanged={INFRA: Unchanged(since_sync=4, inputs="i1")})
    back = decode(encode(plan))
    assert back.unchanged == plan.unchanged and back.fingerprint == plan.fingerprint
    shown = plan.summary()["infrastructure"]
    assert (shown["skipped"], shown["summary"], shown["changes"]) == (
        "inputs unchanged since sync #4", "skipped: inputs unchanged since sync #4", [])
    assert plan.has_changes and not EnvironmentPlan("r1", unchanged=plan.unchanged).has_changes
    moved = EnvironmentPlan("r1", dict(plan.stages), unchanged={INFRA: Unchanged(since_sync=4, inputs="i2")})
    assert moved.fingerprint != plan.fingerprint, "an approval binds the inputs a stage was left out with"
    assert summary_content_fingerprint(plan.summary()) == plan.content_fingerprint == \
        EnvironmentPlan("r2", dict(plan.stages)).content_fingerprint, "a stage left out does nothing"
