"""A drift check on a configuration stage whose one host does not answer still reports the drift
found on the hosts that did: the unreachable host is the check's error, not a reason to drop the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drift.detect import observe_stage
from providers.ansible import AnsibleStage
from sandbox.nodes import SshNodes
from tests.providers.ansible.conftest import PLAYBOOKS, _sandbox_context

CONFIGURATION = {"playbook": "small/site.yml", "inventoryFrom": {"terraformOutput": "nodes"},
                 "extraVars": {"environment_name": "staging", "log_level": "debug"}}


@pytest.fixture(scope="module")
def nodes() -> Iterator[SshNodes]:
    with SshNodes(2) as started:
        yield started


def test_one_unreachable_host_leaves_the_other_hosts_drift_in_the_observation(nodes: SshNodes, tmp_path: Path) -> None:
    stage = AnsibleStage()
    context = _sandbox_context(nodes, PLAYBOOKS, tmp_path / "artifacts", CONFIGURATION)
    assert stage.apply(context, stage.plan(context)).succeeded
    edited = next(path for path in sorted(nodes.nodes[0].root.rglob("*")) if path.is_file())
    edited.write_text(edited.read_text() + "edited_by_hand: true\n")
    down = _sandbox_context(nodes, PLAYBOOKS, tmp_path / "artifacts", CONFIGURATION,
                            settings={"connection": {"hostOverrides": {"staging-node-2": {"port": 1}}}})

    items, error = observe_stage(stage, down)

    assert error is not None and "staging-node-2" in error
    assert [item.address.split("/", 1)[0] for item in items] == ["staging-node-1"]
    assert "edited_by_hand" in str(items[0].live)
