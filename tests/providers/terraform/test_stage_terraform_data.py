"""The Terraform stage end to end on `terraform_data` stacks: real terraform, no provider, fast."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from providers.stage import MASK, Action, Outcome
from providers.terraform import (
    BackendUnreachable,
    ProviderNotFound,
    StalePlan,
    StateVersion,
    TerraformBackend,
    TerraformError,
    TerraformStage,
)
from sandbox.aws import free_port

SLOW_STACK = {
    "main.tf": """
        resource "terraform_data" "slow" {
          provisioner "local-exec" {
            command = "sleep 60"
          }
        }
    """,
}


def test_a_new_stack_plans_a_create_per_address_with_secrets_masked(stage: TerraformStage, simple_stack: Any) -> None:
    plan = stage.plan(simple_stack.context())

    assert [(c.address, c.action) for c in plan.changes] == [
        ("terraform_data.app", Action.create), ("terraform_data.db", Action.create)]
    app = next(c for c in plan.changes if c.address == "terraform_data.app")
    assert f'input.password = "{MASK}"' in app.diff
    assert 'input.name = "web"' in app.diff
    assert "hunter2" not in json.dumps(plan.details)
    assert plan.artifact is not None and plan.artifact.is_file()
    assert plan.live_state == str(StateVersion("", 0))
    assert plan.summary() == "+2 ~0 -0"
    assert len(plan.digest) == 64


def test_the_same_inputs_plan_to_the_same_digest_and_other_inputs_do_not(
        stage: TerraformStage, simple_stack: Any) -> None:
    first = stage.plan(simple_stack.context({"name": "web"}))
    again = stage.plan(simple_stack.context({"name": "web"}))
    other = stage.plan(simple_stack.context({"name": "api"}))

    assert first.digest == again.digest
    assert first.digest != other.digest


def test_applying_the_saved_plan_creates_the_resources_and_returns_outputs_with_secrets_flagged(
        stage: TerraformStage, simple_stack: Any, lines: list[tuple[str, str]]) -> None:
    context = simple_stack.context()
    result = stage.apply(context, stage.plan(context))

    assert result.succeeded, result.error
    assert result.outcomes == {"terraform_data.app": Outcome.created, "terraform_data.db": Outcome.created}
    assert result.outputs["name"] == "web"
    assert result.sensitive_outputs == frozenset({"password"})
    assert "hunter2" not in result.log
    assert all("hunter2" not in line for _, line in lines)
    assert stage.outputs(context).public() == {"name": "web"}


def test_after_an_apply_the_next_plan_has_nothing_to_do(stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    stage.apply(context, stage.plan(context))

    plan = stage.plan(context)

    assert not plan.has_changes
    assert {c.action for c in plan.changes} == {Action.no_op}
    assert plan.live_state.endswith("/1") or StateVersion.parse(plan.live_state).serial >= 1


def test_a_changed_variable_plans_an_update_that_shows_before_and_after(
        stage: TerraformStage, simple_stack: Any) -> None:
    stage.apply(simple_stack.context(), stage.plan(simple_stack.context()))

    plan = stage.plan(simple_stack.context({"name": "api"}))

    actions = {c.address: c.action for c in plan.changes}
    assert actions == {"terraform_data.app": Action.update, "terraform_data.db": Action.update}
    db = next(c for c in plan.changes if c.address == "terraform_data.db")
    assert '~ input: "db-web" -> "db-api"' in db.diff


def test_a_plan_made_before_the_state_moved_is_refused_as_stale(stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    stale = stage.plan(context)
    fresh = stage.plan(context)
    stage.apply(context, fresh)

    with pytest.raises(StalePlan, match="state"):
        stage.apply(context, stale)


def test_a_plan_whose_file_is_gone_is_refused(stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    plan = stage.plan(context)
    assert plan.artifact is not None
    plan.artifact.unlink()

    with pytest.raises(StalePlan, match="no saved plan file"):
        stage.apply(context, plan)


def test_a_destroy_plan_shows_every_delete_before_anything_is_destroyed(
        stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    stage.apply(context, stage.plan(context))

    plan = stage.plan(context, destroy=True)
    assert {c.address: c.action for c in plan.changes} == {
        "terraform_data.app": Action.delete, "terraform_data.db": Action.delete}
    result = stage.apply(context, plan)

    assert set(result.outcomes.values()) == {Outcome.deleted}
    assert not stage.plan(context, destroy=True).changes


def test_in_sync_stack_observes_no_drift_and_keeps_no_correcting_plan(
        stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    stage.apply(context, stage.plan(context))

    report = stage.check_drift(context)

    assert report.items == []
    assert report.correction is None


def test_a_state_edited_out_of_band_is_drift_per_attribute_with_a_correcting_plan(
        stage: TerraformStage, simple_stack: Any) -> None:
    context = simple_stack.context()
    stage.apply(context, stage.plan(context))
    state = json.loads(simple_stack.state_file.read_text())
    for resource in state["resources"]:
        if resource["name"] == "db":
            resource["instances"][0]["attributes"]["input"]["value"] = "db-edited-by-hand"
    state["serial"] += 1
    simple_stack.state_file.write_text(json.dumps(state))

    report = stage.check_drift(context)

    assert [(i.address, i.field, i.desired, i.live) for i in report.items] == [
        ("terraform_data.db", "input", "db-web", "db-edited-by-hand")]
    assert report.correction is not None and report.correction.has_changes
    stage.apply(context, report.correction)
    assert stage.observe(context) == []


@pytest.mark.parametrize(
    ("files", "place", "words"),
    [
        pytest.param({"main.tf": 'resource "terraform_data" "x" {\n  input = \n}\n'}, "main.tf:2",
                     "Invalid expression", id="syntax-error"),
        pytest.param({"main.tf": 'resource "terraform_data" "x" {\n  input = var.nope\n}\n'}, "main.tf:2",
                     "undeclared input variable", id="undeclared-variable"),
        pytest.param({"main.tf": 'resource "terraform_data" "x" {\n  inptu = 1\n}\n'}, "main.tf:2",
                     "Unsupported argument", id="unknown-argument"),
    ],
)
def test_hcl_errors_are_reported_with_file_and_line(
        stage: TerraformStage, make_stack: Any, files: dict[str, str], place: str, words: str) -> None:
    stack = make_stack(files)

    with pytest.raises(TerraformError) as raised:
        stage.plan(stack.context({}))

    assert place in str(raised.value)
    assert words in str(raised.value)
    assert raised.value.diagnostics[0].location == place


def test_a_missing_variable_is_named(stage: TerraformStage, simple_stack: Any) -> None:
    with pytest.raises(TerraformError, match=r'No value for required variable.*"name"'):
        stage.plan(simple_stack.context({}))


def test_a_provider_in_no_mirror_is_named_with_the_directories_searched(
        stage: TerraformStage, make_stack: Any, plugin_dirs: str) -> None:
    stack = make_stack({"main.tf": """
        terraform {
          required_providers {
            nothere = { source = "example/nothere" }
          }
        }
    """})

    with pytest.raises(ProviderNotFound) as raised:
        stage.plan(stack.context({}))

    message = str(raised.value)
    assert "registry.terraform.io/example/nothere" in message
    assert ".terraform.d/plugins" in message
    for root in plugin_dirs.split(":"):
        assert root in message


def test_init_runs_once_and_again_only_when_the_backend_changes(
        stage: TerraformStage, simple_stack: Any, lines: list[tuple[str, str]]) -> None:
    stage.plan(simple_stack.context())
    stage.plan(simple_stack.context({"name": "other"}))
    inits_after_two_plans = sum("Initializing the backend" in line for _, line in lines)
    stage.plan(simple_stack.context(settings={"backend_config": {"workspace_dir": "elsewhere"}}))
    inits_after_backend_change = sum("Initializing the backend" in line for _, line in lines)

    assert inits_after_two_plans == 1
    assert inits_after_backend_change == 2


def test_credentials_reach_terraform_but_never_the_log(
        stage: TerraformStage, make_stack: Any, lines: list[tuple[str, str]]) -> None:
    stack = make_stack({"main.tf": """
        resource "terraform_data" "echo" {
          provisioner "local-exec" {
            command = "echo key=$AWS_SECRET_ACCESS_KEY home=$HOME leak=$TIDEGATE_TEST_LEAK"
          }
        }
    """})
    context = stack.context({}, credentials={"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-very-secret"})

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIDEGATE_TEST_LEAK", "inherited")
        result = stage.apply(context, stage.plan(context))

    echoed = [line for _, line in lines if "(local-exec): key=" in line]
    # The seal gives repository code an empty home of its own, never the worker's.
    assert echoed == [f"terraform_data.echo: (local-exec): key={MASK} home=/tmp leak="]
    assert "wJalrXUtnFEMI" not in result.log
    assert "inherited" not in result.log


def test_a_command_past_its_timeout_is_interrupted_and_leaves_the_state_unlocked(
        stage: TerraformStage, make_stack: Any) -> None:
    stack = make_stack(SLOW_STACK)
    plan = stage.plan(stack.context({}))
    started = time.monotonic()

    result = stage.apply(stack.context({}, timeout=3), plan)

    assert not result.succeeded
    assert result.error is not None and "timed out after 3s and was interrupted" in result.error
    assert "Interrupt received" in result.log
    assert result.outcomes == {"terraform_data.slow": Outcome.skipped}
    assert time.monotonic() - started < 20
    again = stage.plan(stack.context({}))  # would fail on a lock left behind
    assert [c.address for c in again.changes] == ["terraform_data.slow"]


def test_an_unreachable_backend_is_retried_then_reported_naming_the_endpoint(
        stage: TerraformStage, simple_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    context = simple_stack.context(settings={
        "backend_retry_delay": 0.1,
        "backend_config": {"endpoints": {"s3": closed, "dynamodb": closed, "sts": closed}, "max_retries": 1,
                           "skip_credentials_validation": True, "skip_requesting_account_id": True,
                           "use_path_style": True},
    })
    s3 = TerraformBackend(type="s3", bucket="state", key="dev.tfstate", region="us-east-1", dynamodb_table="locks")
    context = dataclasses.replace(context, spec=dataclasses.replace(context.spec, backend=s3),
                                  credentials={"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake-secret"})

    with pytest.raises(BackendUnreachable, match="unreachable after 3 attempts; nothing was changed") as raised:
        stage.plan(context)

    assert closed.removeprefix("http://") in str(raised.value)
    assert sum("retrying" in record.message for record in caplog.records) == 2


def test_a_plan_saved_on_another_machine_is_applied_from_this_runs_own_plans_folder(
        stage: TerraformStage, simple_stack: Any, tmp_path: Any) -> None:
    """Several machines share only the store: the plan file comes back at the planning worker's path,
    which this worker's sealed terraform cannot see; it is applied from this run's folder, then removed."""
    context = simple_stack.context()
    plan = stage.plan(context)
    assert plan.artifact is not None
    elsewhere = tmp_path / "other-machine" / "runs" / plan.artifact.name
    elsewhere.parent.mkdir(parents=True)
    plan.artifact.rename(elsewhere)

    result = stage.apply(context, dataclasses.replace(plan, artifact=elsewhere))

    assert result.succeeded, result.error
    assert "Apply complete!" in result.log
    assert not elsewhere.exists() and not (context.artifacts / "terraform" / elsewhere.name).exists()
