"""The strategy of a plan's check run: Ansible's `linear`, except that a task which fails on a host
where an earlier task of the same play reported a change is recorded as depending on earlier
changes, and the host goes on with the play.

Why: check mode changes nothing, so a task that needs what an earlier task would have made fails
("Destination ... does not exist" after a `copy` that would create the file; starting a service
whose package the play installs). That is no error in the playbook, only something check mode
cannot predict. Ansible would mark the host failed and check none of its later tasks; here the
failed result keeps its message, gains `tidegate_depends_on_earlier_changes: true` and is treated
as `ignore_errors` (the callback still reports it as failed, with `ignore_errors`), so the plan can
show it per host and task and still check the rest of the play.

A failure on a host with no earlier change in the play stays a failure. The strategy is loaded
only for plan runs (providers/ansible/runner.py writes it into the run's ansible.cfg); a drift
check or an apply runs plain `linear`. A strategy instance lives for one play (one batch of a
`serial` play), so "earlier" means earlier in the same play.

Hooked where results arrive (the result thread appends each host's final result, in the order
the host ran its tasks, to `_results`): every later step of `linear` is Ansible's own.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy  # type: ignore[import-untyped]

DOCUMENTATION = """
    name: tidegate_plan
    short_description: linear, where a failure that follows a change on its host is a prediction gap
    description:
        - Used by Tidegate for the check run of a plan; see the module docstring.
"""

#: What Ansible writes in place of a no_log result (providers/ansible/events.py reads it back).
CENSORED = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"

#: The key a result gains when its failure follows an earlier change on its host.
MARKER = "tidegate_depends_on_earlier_changes"


class _Results(deque[Any]):
    """The strategy's queue of final results; `append` (the result thread) records changes per
    host and marks the failures that follow one."""

    def __init__(self) -> None:
        super().__init__()
        self.changed_hosts: set[str] = set()

    def append(self, task_result: Any) -> None:
        host = task_result._host.name
        if task_result.is_failed():
            if host in self.changed_hosts and not task_result._task.ignore_errors:
                # `_task` is this result's own copy of the task (normalize_task_result): only this
                # host's result is affected.
                task_result._task.ignore_errors = True
                if task_result._result.get("_ansible_no_log") or task_result._task.no_log:
                    # Ansible's own censoring keeps only `changed`, `attempts` and `retries`: censor
                    # it here instead, keeping the marker, so a no_log task is still reported as
                    # unpredictable (with nothing of its output).
                    task_result._result = {"censored": CENSORED, "changed": False, "failed": True,
                                           "_ansible_no_log": False}
                    task_result._task.no_log = False
                task_result._result[MARKER] = True
        elif task_result.is_changed() and not task_result.is_skipped() and not task_result.is_unreachable():
            self.changed_hosts.add(host)
        super().append(task_result)


class StrategyModule(LinearStrategy):  # type: ignore[misc]
    def __init__(self, tqm: Any) -> None:
        super().__init__(tqm)
        self._results = _Results()
