"""Preview plans (`lock: False`) read the state without taking its lock, so they never wait on an apply."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from providers.stage import Action
from providers.terraform import StateLocked, TerraformStage


@contextmanager
def held_state_lock(state: Path) -> Iterator[None]:
    """Hold the local backend's lock as a running apply holds it (a POSIX write lock on the state file)."""
    with state.open("r+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


@pytest.mark.parametrize("lock", [pytest.param(True, id="a-sync-plan-waits-for-the-lock"),
                                  pytest.param(False, id="a-preview-plan-does-not")])
def test_while_an_apply_holds_the_state_lock_only_lock_free_plans_go_ahead(
        stage: TerraformStage, simple_stack: Any, lock: bool) -> None:
    context = simple_stack.context()
    applied = stage.apply(context, stage.plan(context))
    assert applied.succeeded, applied.error
    changed = simple_stack.context({"name": "api"}, settings={"lock": lock})

    with held_state_lock(simple_stack.state_file):
        if lock:
            with pytest.raises(StateLocked):
                stage.plan(changed)
            return
        plan = stage.plan(changed)

    assert {c.address: c.action for c in plan.changes if c.action is not Action.no_op} == {
        "terraform_data.app": Action.update, "terraform_data.db": Action.update}
