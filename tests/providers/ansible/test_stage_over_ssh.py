"""The configuration stage against real sshd nodes: real ansible-playbook through ansible-runner."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from providers.ansible import AnsibleStage, AnsibleStageError, ConfigurationInputs
from providers.ansible.stage import UNPREDICTABLE
from providers.stage import Action, Outcome, StageContext, StalePlan
from sandbox.nodes import SshNodes
from tests.providers.ansible.conftest import ExampleApplied, accepted_logins, node_files

pytestmark = pytest.mark.integration

ContextFactory = Callable[..., StageContext[ConfigurationInputs]]

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


SMALL_CONFIGURATION = {
    "playbook": "small/site.yml",
    "inventoryFrom": {"terraformOutput": "nodes"},
    "extraVars": {"environment_name": "staging", "log_level": "debug"},
}

#: Why ssh could not reach a host whose sshd is down. With pipelining, Ansible writes the module to
#: ssh's stdin: when ssh has already exited (refused) by then, as on a loaded machine, Ansible
#: reports the broken pipe instead of ssh's own message. Both are the same unreachable host.
REFUSED = ("Connection refused", "Data could not be sent to remote host")


def test_the_example_playbook_configures_both_nodes_over_ssh_and_a_second_run_changes_nothing(
    example_applied: ExampleApplied, configured_nodes: SshNodes
) -> None:
    """The plan and apply from bare nodes are the shared `example_applied` ones (made once per module)."""
    stage = AnsibleStage()
    context = example_applied.context

    plan = example_applied.plan
    assert plan.has_changes
    hosts = {change.address.split("/", 1)[0] for change in plan.changes if change.action is not Action.no_op}
    assert hosts == {"staging-node-1", "staging-node-2"}
    for host_vars in plan.details["inventory"]["all"]["hosts"].values():
        assert host_vars["ansible_connection"] == "ssh"
    assert example_applied.files_after_plan == [{}, {}], "check mode wrote to a node"

    result = example_applied.result
    assert result.succeeded, result.error
    assert Outcome.created in result.outcomes.values()
    assert {status["status"] for status in result.outputs["hosts"].values()} == {"ok"}
    assert result.outputs["unplanned_changes"] == []

    # The files are in each node's own mount namespace, reached over SSH: the machine's view of
    # the managed path stays empty, each sshd logged public-key logins, each node has its own files.
    assert list(configured_nodes.managed_path.iterdir()) == []
    assert all(after > before for before, after in zip(example_applied.logins_before.values(),
                                                        example_applied.logins_after.values(), strict=True))
    first, second = (node_files(node.root) for node in configured_nodes.nodes)
    assert "TIDEGATE_NODE_NAME=staging-node-1" in first["etc/tidegate-node/node.env"]
    assert "TIDEGATE_NODE_NAME=staging-node-2" in second["etc/tidegate-node/node.env"]
    assert "TIDEGATE_ENVIRONMENT=staging" in first["etc/tidegate-node/node.env"]

    again = stage.plan(context)
    assert not again.has_changes, [change.address for change in again.changes if change.action is not Action.no_op]
    assert {change.action for change in again.changes} == {Action.no_op}
    assert len(again.changes) == len(plan.changes)

    # Live state that moves after the plan is not re-checked before apply (its inputs are the
    # same): the real run converges it and names the change the plan did not show.
    edited = configured_nodes.nodes[1].root / "etc" / "tidegate-node" / "monitoring" / "agent.yaml"
    original = edited.read_text()
    edited.write_text(original + "edited_by_hand: true\n")
    converged = stage.apply(context, again)
    assert converged.succeeded, converged.error
    address = "staging-node-2/monitoring_agent : Write the monitoring agent configuration"
    assert converged.outputs["unplanned_changes"] == [address]
    assert converged.outcomes[address] is Outcome.configured
    assert edited.read_text() == original


def test_a_file_edited_by_hand_on_one_node_is_drift_there_only_and_apply_corrects_it(
    example_applied: ExampleApplied, configured_nodes: SshNodes
) -> None:
    """Starts from the nodes as the example's real apply left them (`example_applied`, restored)."""
    stage = AnsibleStage()
    context, plan = example_applied.context, example_applied.plan

    first, second = configured_nodes.nodes
    edited = first.root / "etc" / "tidegate-node" / "monitoring" / "agent.yaml"
    original = edited.read_text()
    edited.write_text(original + "edited_by_hand: true\n")
    untouched = node_files(second.root)

    drift = stage.observe(context)

    live_path = f"{first.node_prefix}/etc/tidegate-node/monitoring/agent.yaml"
    assert [(item.address, item.field) for item in drift] == [
        ("staging-node-1/monitoring_agent : Write the monitoring agent configuration", live_path)
    ]
    item = drift[0]
    assert "-edited_by_hand: true" in item.diff
    assert item.live == original + "edited_by_hand: true\n"
    assert item.desired == original

    # The plan's inputs are unchanged, so it still applies; the real run puts the file back.
    result = stage.apply(context, plan)
    assert result.succeeded, result.error
    assert result.outcomes[drift[0].address] is Outcome.configured
    changed = [address for address, outcome in result.outcomes.items() if outcome is not Outcome.unchanged]
    assert changed == [drift[0].address]
    assert edited.read_text() == original
    assert node_files(second.root) == untouched
    assert stage.observe(context) == []


def test_an_unreachable_node_fails_the_stage_with_its_error_and_the_other_nodes_results_are_kept(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    stage = AnsibleStage()
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", SMALL_CONFIGURATION)
    plan = stage.plan(context)
    clean_nodes.stop_sshd("node-2")  # staging-node-2 goes down between plan and apply
    try:
        result = stage.apply(context, plan)
    finally:
        clean_nodes.start_sshd("node-2")

    assert not result.succeeded
    assert result.error is not None
    assert "staging-node-2: unreachable" in result.error
    assert any(reason in result.error for reason in REFUSED), result.error
    assert "results of staging-node-1 recorded" in result.error
    assert result.outputs["hosts"]["staging-node-1"]["status"] == "ok"
    assert result.outputs["hosts"]["staging-node-2"]["status"] == "unreachable"
    node_1 = {address: outcome for address, outcome in result.outcomes.items() if address.startswith("staging-node-1/")}
    assert len(node_1) == 4 and set(node_1.values()) == {Outcome.created}
    assert not any(address.startswith("staging-node-2/") for address in result.outcomes)
    assert node_files(clean_nodes.nodes[0].root)
    assert node_files(clean_nodes.nodes[1].root) == {}


def test_an_unreachable_node_fails_the_plan_with_the_reachable_nodes_changes_attached(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", SMALL_CONFIGURATION,
                              settings={"connection": {"hostOverrides": {"staging-node-2": {"port": 1}}}})
    with pytest.raises(AnsibleStageError) as caught:
        AnsibleStage().plan(context)
    assert set(caught.value.host_errors) == {"staging-node-2"}
    assert any(reason in caught.value.host_errors["staging-node-2"] for reason in REFUSED)
    partial = caught.value.partial
    assert partial is not None and not isinstance(partial, list)
    assert {change.address.split("/", 1)[0] for change in partial.changes} == {"staging-node-1"}


def test_a_playbook_syntax_error_is_reported_with_file_and_line_before_any_host_is_touched(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    configuration = {**SMALL_CONFIGURATION, "playbook": "broken/site.yml"}
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", configuration)
    logins_before = accepted_logins(clean_nodes)

    with pytest.raises(AnsibleStageError) as caught:
        AnsibleStage().plan(context)

    assert "broken/site.yml:5:7" in str(caught.value)
    assert "conflicting action statements" in str(caught.value)
    assert accepted_logins(clean_nodes) == logins_before


def test_a_missing_variable_gives_a_message_per_host(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    configuration = {**SMALL_CONFIGURATION, "playbook": "undefined/site.yml"}
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", configuration)

    with pytest.raises(AnsibleStageError) as caught:
        AnsibleStage().plan(context)

    errors = caught.value.host_errors
    assert set(errors) == {"staging-node-1", "staging-node-2"}
    for host, message in errors.items():
        assert message.startswith(f"{host}: task 'Config that needs a variable nobody set' (undefined/site.yml:5)")
        assert "'service_port' is undefined" in message


def test_a_stale_plan_is_refused(clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory) -> None:
    stage = AnsibleStage()
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", SMALL_CONFIGURATION)
    plan = stage.plan(context)
    edited = {**SMALL_CONFIGURATION, "extraVars": {"environment_name": "staging", "log_level": "info"}}
    changed = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "b", edited)

    with pytest.raises(StalePlan, match="stale plan"):
        stage.apply(changed, plan)

    assert all(node_files(node.root) == {} for node in clean_nodes.nodes)


def test_secrets_stay_out_of_artifacts_and_the_key_file_is_removed(
    clean_nodes: SshNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox_context: ContextFactory
) -> None:
    monkeypatch.setenv("TIDEGATE_SECRET_KEY", "caller-secret-that-must-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-that-must-not-leak")
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "artifacts", SMALL_CONFIGURATION)
    plan = AnsibleStage().plan(context)
    run_dir = Path(plan.details["run_dir"])

    key_lines = [line for line in context.credentials["ssh_private_key"].splitlines() if len(line) > 20]
    for path in run_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "must-not-leak" not in text, path
            assert not any(line in text for line in key_lines), path
    assert not (run_dir / "secrets" / "ssh_key").exists()
    command = json.loads(next(run_dir.glob("artifacts/*/command")).read_text())
    assert set(command["env"]) <= {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR"} | {
        key for key in command["env"] if key.startswith(("ANSIBLE_", "RUNNER_", "AWX_"))
    }
    assert os.environ["TIDEGATE_SECRET_KEY"] not in json.dumps(command)
    lines = next(run_dir.glob("artifacts/*/job_events.jsonl")).read_text().splitlines()
    kinds = [json.loads(line)["event"] for line in lines]
    assert kinds[0] == "playbook_on_start" and "playbook_on_stats" in kinds


def test_a_run_past_its_timeout_fails_the_stage_and_says_so(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", SMALL_CONFIGURATION, settings={"timeout": 1})
    started = time.monotonic()

    with pytest.raises(AnsibleStageError, match=r"timed out after 1 s"):
        AnsibleStage().plan(context)

    assert time.monotonic() - started < 30


def test_over_ssh_a_fresh_node_plans_the_edit_of_a_file_to_be_written_as_unpredictable_and_a_configured_one_does_not(
    clean_nodes: SshNodes, tmp_path: Path, sandbox_context: ContextFactory
) -> None:
    fresh, configured = clean_nodes.nodes
    (configured.root / "etc" / "app").mkdir(parents=True)
    (configured.root / "etc" / "app" / "app.conf").write_text("port = 8080\n")
    nodes = [{"name": f"staging-node-{index}", "address": f"10.0.{index}.10",
              "vars": {"node_root": "{{ node_prefix }}"}} for index in (1, 2)]
    configuration = {**SMALL_CONFIGURATION, "playbook": "first_time/copy_then_lineinfile.yml"}
    stage = AnsibleStage()
    context = sandbox_context(clean_nodes, PLAYBOOKS, tmp_path / "a", configuration, terraform_nodes=nodes)

    plan = stage.plan(context)

    changes = {change.address: change for change in plan.changes}
    unpredictable = changes["staging-node-1/Set the log level"]
    assert unpredictable.action is Action.update
    assert unpredictable.diff.splitlines()[0] == UNPREDICTABLE
    assert "+log_level = debug" in changes["staging-node-2/Set the log level"].diff
    assert node_files(fresh.root) == {}

    result = stage.apply(context, plan)

    assert result.succeeded, result.error
    for node in (fresh, configured):
        assert node_files(node.root) == {"etc/app/app.conf": "port = 8080\nlog_level = debug\n"}
    assert not stage.plan(context).has_changes
