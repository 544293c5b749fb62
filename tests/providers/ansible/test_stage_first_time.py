"""Playbooks as people write them, on nodes configured for the first time: real ansible-playbook
runs (sealed, `connection.type: local`), each node a directory of its own.

In check mode a task that needs what an earlier task would have made fails ("Destination ... does
not exist"). The plan shows such a task, per host, as depending on earlier changes; apply runs it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from dashboard.views import plan_stages
from providers.ansible import AnsibleStage, AnsibleStageError, ConfigurationInputs
from providers.ansible.stage import UNPREDICTABLE
from providers.stage import Action, Outcome, Stage, StageContext, StagePlan
from reconciler.plans import EnvironmentPlan
from reconciler.previews import EnvironmentPreview, PreviewRequest, Report, markdown
from tests.providers.ansible.conftest import configuration_inputs

pytestmark = pytest.mark.integration

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"

NodeRoots = Callable[[int], list[Path]]


@pytest.fixture
def node_roots() -> Iterator[NodeRoots]:
    """Empty node roots under /var/tmp: a `local` playbook runs in a mount namespace with its own
    empty /tmp, so the nodes cannot live in pytest's tmp_path."""
    made: list[Path] = []

    def make(count: int) -> list[Path]:
        roots = [Path(tempfile.mkdtemp(prefix="tidegate-node-", dir="/var/tmp")) for _ in range(count)]
        made.extend(roots)
        return roots

    yield make
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


def local_context(playbook: str, roots: list[Path], artifacts: Path,
                  node_vars: dict[str, Any] | None = None) -> StageContext[ConfigurationInputs]:
    """The context of a `local` configuration stage over `node-1`, `node-2`, ... (one per root)."""
    nodes = [{"name": f"node-{index}", "address": "127.0.0.1",
              "vars": {"node_root": str(root), **(node_vars or {})}} for index, root in enumerate(roots, start=1)]
    return StageContext(
        environment="staging", revision="0" * 40, workdir=PLAYBOOKS, artifacts=artifacts,
        spec=configuration_inputs({"playbook": f"first_time/{playbook}", "inventoryFrom": {"terraformOutput": "nodes"},
                                   "connection": {"type": "local"}}, nodes),
    )


def unpredictable(plan: StagePlan) -> dict[str, str]:
    return {change.address: change.diff for change in plan.changes if change.diff.startswith(UNPREDICTABLE)}


def files(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[relative] = path.read_text()
    return found


@dataclass(frozen=True)
class Shape:
    playbook: str
    unpredictable: str
    """The task check mode cannot predict on a fresh node."""
    check_mode_says: str
    files: dict[str, str] = field(default_factory=dict)
    """Files under the node root after apply (`-> target` for a link; `{root}` is the root)."""


SHAPES = [
    pytest.param(Shape("copy_then_lineinfile.yml", "Set the log level", "does not exist",
                       {"etc/app/app.conf": "port = 8080\nlog_level = debug\n"}), id="copy-then-lineinfile"),
    pytest.param(Shape("copy_then_lineinfile_no_log.yml", "Set the log level", "(output hidden by no_log)",
                       {"etc/app/app.conf": "port = 8080\nlog_level = debug\n"}), id="copy-then-lineinfile-no-log"),
    pytest.param(Shape("package_then_service.yml", "Start appd", "Could not find the requested service appd",
                       {"run/appd.pid": "running\n"}), id="package-then-service"),
    pytest.param(Shape("directory_then_template.yml", "Point current at the release", "src file does not exist",
                       {"srv/app/releases/1/settings.ini": "[app]\nnode = node-1\nrelease = 1\n",
                        "srv/app/current.ini": "-> {root}/srv/app/releases/1/settings.ini"}),
                 id="directory-then-template-then-link"),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_first_time_configuration_plans_the_dependent_task_as_unpredictable_applies_it_and_then_is_a_no_op(
    shape: Shape, node_roots: NodeRoots, tmp_path: Path,
) -> None:
    (root,) = node_roots(1)
    stage = AnsibleStage()
    context = local_context(shape.playbook, [root], tmp_path / "artifacts")

    plan = stage.plan(context)

    address = f"node-1/{shape.unpredictable}"
    assert list(unpredictable(plan)) == [address]
    (change,) = [change for change in plan.changes if change.address == address]
    assert change.action is Action.update
    assert change.diff.splitlines()[0] == UNPREDICTABLE
    assert shape.check_mode_says in change.diff
    assert plan.details["hosts"]["node-1"]["unpredictable"] == 1
    assert files(root) == {}, "check mode wrote to the node"

    result = stage.apply(context, plan)

    assert result.succeeded, result.error
    assert result.outcomes[address] in (Outcome.configured, Outcome.created)
    assert result.outputs["unplanned_changes"] == []
    after = files(root)
    for path, content in shape.files.items():
        assert after[path] == content.replace("{root}", str(root))

    again = stage.plan(context)
    assert not again.has_changes, [change.address for change in again.changes if change.action is not Action.no_op]
    assert unpredictable(again) == {}


@pytest.mark.parametrize(
    ("playbook", "failing_task"),
    [
        pytest.param("edit_before_write.yml", "Set the log level", id="after-a-task-that-changed-nothing"),
        pytest.param("change_in_an_earlier_play.yml", "Set the log level", id="after-a-change-in-an-earlier-play"),
    ],
)
def test_a_task_that_fails_in_check_mode_without_an_earlier_change_in_its_play_still_fails_the_plan(
    playbook: str, failing_task: str, node_roots: NodeRoots, tmp_path: Path,
) -> None:
    (root,) = node_roots(1)

    with pytest.raises(AnsibleStageError) as caught:
        AnsibleStage().plan(local_context(playbook, [root], tmp_path / "artifacts"))

    assert f"task {failing_task!r}" in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert isinstance(caught.value.partial, StagePlan)
    assert unpredictable(caught.value.partial) == {}


def test_a_drift_check_on_a_configured_node_still_fails_where_a_task_fails_after_a_change(
    node_roots: NodeRoots, tmp_path: Path,
) -> None:
    (root,) = node_roots(1)
    stage = AnsibleStage()
    context = local_context("copy_then_lineinfile.yml", [root], tmp_path / "artifacts")
    assert stage.apply(context, stage.plan(context)).succeeded
    (root / "etc" / "app" / "app.conf").unlink()  # removed by hand

    with pytest.raises(AnsibleStageError) as caught:
        stage.observe(context)

    assert "task 'Set the log level'" in str(caught.value) and "does not exist" in str(caught.value)
    # The same check as a plan is a plan: the write is recreated, the edit depends on it.
    assert list(unpredictable(stage.plan(context))) == ["node-1/Set the log level"]


def test_the_pr_comment_and_the_dashboards_plan_show_the_unpredictable_task_by_host_and_task(
    node_roots: NodeRoots, tmp_path: Path,
) -> None:
    (root,) = node_roots(1)
    plan = AnsibleStage().plan(local_context("copy_then_lineinfile.yml", [root], tmp_path / "artifacts"))
    summary = EnvironmentPlan(revision="0" * 40, stages={Stage.CONFIGURATION: plan}).summary()

    comment = markdown(Report(head_sha="f" * 40, environments={"staging": EnvironmentPreview(stages=summary)}),
                       PreviewRequest(repository_id=1, number=7, head_sha="f" * 40), "https://t/previews/1")
    (stage,) = plan_stages(summary)

    after_address = comment.split("- `node-1/Set the log level`: **update**", 1)[1]
    assert after_address.lstrip().splitlines()[1] == UNPREDICTABLE  # the first line inside the fence
    (change,) = [change for change in stage.changes if change.address == "node-1/Set the log level"]
    assert change.diff.splitlines()[0] == UNPREDICTABLE


@pytest.mark.parametrize(
    ("node_vars", "expected"),
    [
        pytest.param({}, sys.executable, id="the-controllers-python-by-default"),
        pytest.param({"ansible_python_interpreter": "/usr/bin/python3"}, "/usr/bin/python3",
                     id="the-interpreter-terraform-sets-for-the-host"),
    ],
)
def test_a_local_connection_runs_modules_with_the_controllers_python_not_a_broken_one_on_path(
    node_vars: dict[str, Any], expected: str, node_roots: NodeRoots, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (root, shims) = node_roots(2)
    shim = shims / "python3.13"  # what Ansible's interpreter discovery tries first
    shim.write_text("#!/bin/sh\necho 'not a python'\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    stage = AnsibleStage()
    context = local_context("interpreter.yml", [root], tmp_path / "artifacts", node_vars)

    result = stage.apply(context, stage.plan(context))

    assert result.succeeded, result.error
    assert (root / "interpreter").read_text() == f"{expected}\n"


def test_an_apply_hands_each_line_of_its_output_to_the_live_log_as_the_run_goes(
    node_roots: NodeRoots, tmp_path: Path,
) -> None:
    """The lines `StageContext.on_line` receives are the run's output (what `result.log` keeps)."""
    root = node_roots(1)[0]
    stage = AnsibleStage()
    context = local_context("interpreter.yml", [root], tmp_path / "artifacts", {})
    plan = stage.plan(context)
    lines: list[str] = []

    result = stage.apply(replace(context, on_line=lines.append), plan)

    assert result.succeeded, result.error
    assert any(line.startswith("TASK [") for line in lines) and any("PLAY RECAP" in line for line in lines)
    assert [line for line in lines if line.strip()] == [line for line in result.log.splitlines() if line.strip()]


def test_an_apply_reports_hosts_done_of_the_inventorys_hosts_as_the_run_goes(
    node_roots: NodeRoots, tmp_path: Path,
) -> None:
    """`StageContext.on_progress` says how many hosts answered the running task (0 again when a task
    starts) and all of them at the recap; the total is the inventory's hosts."""
    roots = node_roots(2)
    stage = AnsibleStage()
    context = local_context("interpreter.yml", roots, tmp_path / "artifacts", {})
    plan = stage.plan(context)
    counts: list[tuple[int, int, str]] = []

    result = stage.apply(replace(context, on_progress=lambda done, total, unit: counts.append((done, total, unit))),
                         plan)

    assert result.succeeded, result.error
    assert {total for _, total, _ in counts} == {2} and {unit for _, _, unit in counts} == {"hosts"}
    assert (0, 2, "hosts") in counts and (2, 2, "hosts") in counts and counts[-1] == (2, 2, "hosts")
    assert any(later < earlier for (earlier, _, _), (later, _, _) in pairwise(counts)), \
        "a new task starts again from 0"
