#!/usr/bin/python
"""A service module confined to a node's root: `<root>/etc/init.d/<name>` is the service, and
`<root>/run/<name>.pid` says it runs. Checks and starts it as ansible.builtin.service does, also
in check mode (a service whose package is not installed cannot be found)."""

from __future__ import annotations

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={"name": {"type": "str", "required": True},
                       "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
                       "root": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    name, state, root = module.params["name"], module.params["state"], module.params["root"]
    script = os.path.join(root, "etc", "init.d", name)
    if not os.access(script, os.X_OK):
        module.fail_json(msg=f"Could not find the requested service {name}: host")
    running = os.path.exists(os.path.join(root, "run", f"{name}.pid"))
    if running == (state == "started"):
        module.exit_json(changed=False, name=name, state=state)
    if not module.check_mode:
        subprocess.run([script, "start" if state == "started" else "stop"], check=True)
    module.exit_json(changed=True, name=name, state=state)


if __name__ == "__main__":
    main()
