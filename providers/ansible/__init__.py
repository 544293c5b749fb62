"""The configuration stage: Ansible through ansible-runner, inventory from Terraform outputs.

Public API:

* `AnsibleStage` — `plan` (`--check --diff`), `apply` (the real run), `observe` (check-mode drift);
* `AnsibleStageError`, `PlaybookSyntaxError` — what plan and observe raise;
* `inventory.build_inventory`, `inventory.nodes_from_output` — the inventory from the `nodes` output;
* `runner.run_playbook`, `runner.RunRequest` — one ansible-runner run in a private data dir;
* `events.parse_events` — per host/task results from runner events.
"""

from providers.ansible.runner import PlaybookSyntaxError, RunnerError
from providers.ansible.stage import AnsibleStage, AnsibleStageError, ConfigurationInputs

__all__ = ["AnsibleStage", "AnsibleStageError", "ConfigurationInputs", "PlaybookSyntaxError", "RunnerError"]
