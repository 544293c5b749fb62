"""Reading per host/task results from ansible-runner events recorded from real runs over SSH.

The recordings (tests/providers/ansible/events/*.json) are real event streams of the small test
playbook and the example playbook on two sandbox nodes, with only volatile paths replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.ansible.events import DEPENDS_ON_EARLIER_CHANGES, TaskStatus, parse_events, render_diff
from providers.ansible.plugins.strategy import tidegate_plan

EVENTS = Path(__file__).resolve().parent / "events"


def recorded(name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((EVENTS / f"{name}.json").read_text())
    return events


def test_check_mode_on_fresh_nodes_reports_every_task_as_a_created_file_on_both_hosts() -> None:
    report = parse_events(recorded("check-mode-fresh-nodes"))

    assert report.started
    assert report.hosts == ["node-1", "node-2"]
    assert report.host_errors == {}
    assert {task.status for task in report.tasks} == {TaskStatus.changed}
    config = next(task for task in report.tasks if task.address == "node-1/App config")
    assert config.location.endswith("small/site.yml:13")
    (change,) = config.files
    assert change.created and change.path == "/srv/node/etc/app/app.conf"
    assert "+environment = staging" in change.diff
    assert change.before == "" and change.after == "environment = staging\nlog_level = debug\n"


def test_a_loop_reports_each_changed_item_as_a_file_of_one_task() -> None:
    report = parse_events(recorded("check-mode-fresh-nodes"))

    flags = next(task for task in report.tasks if task.address == "node-2/Feature files")

    assert [change.path for change in flags.files] == ["/srv/node/etc/app/alpha.flag", "/srv/node/etc/app/beta.flag"]


def test_a_directory_change_is_listed_as_attribute_changes() -> None:
    report = parse_events(recorded("check-mode-fresh-nodes"))

    directory = next(task for task in report.tasks if task.address == "node-1/App directory")

    (change,) = directory.files
    assert change.created
    assert change.diff == "/srv/node/etc/app:\n  state: absent -> directory"


def test_file_diff_events_of_unchanged_tasks_are_not_changes() -> None:
    events = recorded("second-apply")
    assert any(event["event"] == "runner_on_file_diff" for event in events)

    report = parse_events(events)

    assert report.changed() == []
    assert {task.status for task in report.tasks} == {TaskStatus.ok}
    assert report.stats["node-1"]["changed"] == 0


def test_a_hand_edited_file_is_one_changed_task_on_that_host_with_a_diff_from_live_to_desired() -> None:
    report = parse_events(recorded("check-mode-edited-file"))

    (changed,) = report.changed()

    assert changed.address == "node-1/App config"
    (change,) = changed.files
    assert not change.created
    assert change.before == "edited by hand\n"
    assert "-edited by hand" in change.diff and "+log_level = debug" in change.diff
    assert "/srv/node/etc/app/app.conf (live)" in change.diff


def test_a_template_change_names_the_target_file_not_the_controllers_temporary_copy() -> None:
    report = parse_events(recorded("example-check-mode-edited-template"), Path("/checkout"))

    (changed,) = report.changed()

    assert changed.address == "staging-node-1/monitoring_agent : Write the monitoring agent configuration"
    assert changed.location == "infrastructure/ansible/roles/monitoring_agent/tasks/main.yml:2"
    (change,) = changed.files
    assert change.path == "/srv/node/etc/tidegate-node/monitoring/agent.yaml"
    assert "ansible-local" not in change.diff
    assert "-edited_by_hand: true" in change.diff


def test_an_unreachable_host_gets_its_connection_error_while_the_other_hosts_results_stay() -> None:
    report = parse_events(recorded("one-host-unreachable"))

    assert set(report.host_errors) == {"node-2"}
    assert report.host_errors["node-2"].startswith("node-2: unreachable: Data could not be sent to remote host")
    assert "Connection refused" in report.host_errors["node-2"]
    assert "\r" not in report.host_errors["node-2"]
    assert [task.task for task in report.for_host("node-1")] == ["App directory", "App config", "Feature files",
                                                                  "Host marker"]
    assert [task.status for task in report.for_host("node-2")] == [TaskStatus.unreachable]


def test_an_undefined_variable_is_a_failed_task_per_host_with_the_first_paragraph_of_ansibles_message() -> None:
    report = parse_events(recorded("undefined-variable"), Path("/checkout"))

    assert set(report.host_errors) == {"node-1", "node-2"}
    message = report.host_errors["node-1"]
    assert message == (
        "node-1: task 'Config that needs a variable nobody set' (undefined/site.yml:5) failed: "
        "The task includes an option with an undefined variable.. 'service_port' is undefined"
    )


def test_repeated_task_names_on_a_host_get_distinct_addresses() -> None:
    event = {"event": "runner_on_ok", "event_data": {"host": "h", "task": "Write", "res": {"changed": False}}}

    report = parse_events([event, event, event])

    assert [task.address for task in report.tasks] == ["h/Write", "h/Write #2", "h/Write #3"]


def test_an_ignored_failure_does_not_fail_the_host() -> None:
    event = {"event": "runner_on_failed",
             "event_data": {"host": "h", "task": "Probe", "ignore_errors": True, "res": {"msg": "nope"}}}

    report = parse_events([event])

    assert report.host_errors == {}
    assert report.tasks[0].status is TaskStatus.ok


@pytest.mark.parametrize(
    ("diff", "expected"),
    [
        pytest.param({"before": {"path": "/p", "mode": "0644"}, "after": {"path": "/p", "mode": "0600"}},
                     "/p:\n  mode: 0644 -> 0600", id="mode-change"),
        pytest.param({"before": {"path": "/p", "state": "file"}, "after": {"path": "/p", "state": "absent"}},
                     "/p:\n  state: file -> absent", id="removal"),
        pytest.param({"prepared": "custom module diff\n"}, "custom module diff", id="prepared-text"),
        pytest.param({"before": "a\n", "after": "b", "before_header": "/f", "after_header": "/f"},
                     "--- /f (live)\n+++ /f (desired)\n@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file",
                     id="text-without-final-newline"),
    ],
)
def test_a_diff_entry_renders_as_readable_text(diff: dict[str, Any], expected: str) -> None:
    change = render_diff(diff)
    assert change is not None
    assert change.diff == expected


def test_a_removed_file_is_marked_deleted() -> None:
    change = render_diff({"before": {"path": "/p", "state": "file"}, "after": {"path": "/p", "state": "absent"}})
    assert change is not None and change.deleted and not change.created


def test_results_are_ordered_by_task_then_host_whichever_host_finished_first() -> None:
    events = recorded("check-mode-edited-file")
    finished = [event["event_data"]["host"] for event in events
                if event["event"] == "runner_on_ok" and event["event_data"]["task"] == "App config"]
    assert finished == ["node-2", "node-1"]

    report = parse_events(events)

    assert [task.address for task in report.tasks][:4] == [
        "node-1/App directory", "node-2/App directory", "node-1/App config", "node-2/App config",
    ]


@pytest.mark.parametrize(
    ("res", "status", "host_errors"),
    [
        pytest.param({"msg": "Destination /n/app.conf does not exist !", DEPENDS_ON_EARLIER_CHANGES: True},
                     TaskStatus.unpredictable, {}, id="marked-by-the-plan-strategy"),
        pytest.param({"msg": "Destination /n/app.conf does not exist !"}, TaskStatus.ok, {},
                     id="ignore-errors-of-the-playbook"),
    ],
)
def test_a_check_mode_failure_after_an_earlier_change_is_unpredictable_not_a_host_error(
    res: dict[str, Any], status: TaskStatus, host_errors: dict[str, str],
) -> None:
    event = {"event": "runner_on_failed",
             "event_data": {"host": "h", "task": "Set the log level", "ignore_errors": True, "res": res}}

    report = parse_events([event])

    (task,) = report.tasks
    assert task.status is status
    assert task.message == "Destination /n/app.conf does not exist !"
    assert report.host_errors == host_errors


def test_the_plan_strategy_marks_failures_with_the_key_the_parser_reads() -> None:
    assert tidegate_plan.MARKER == DEPENDS_ON_EARLIER_CHANGES
