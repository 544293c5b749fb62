"""What `pip install tidegate` leaves out: the sandbox's stand-ins live in the `[sandbox]` extra.

`serve`, `worker` and `beat` need nothing from it, so nothing on their import path may import
`sandbox.kube` (aiohttp, jsonpatch) or run moto. The sandbox commands (`tidegate up` with its
sandbox, `tidegate sandbox …`, `plan --sandbox`, a worker in sandbox mode) ask `require_sandbox`
first and, on an install without the extra, say which one to add instead of dying on an import.
"""

from __future__ import annotations

from importlib.util import find_spec

SANDBOX_MODULES = {"moto": "moto[server]", "aiohttp": "aiohttp", "jsonpatch": "jsonpatch"}
INSTALL = "pip install 'tidegate[sandbox]'"


class SandboxMissing(RuntimeError):
    """A sandbox command on an install without the `[sandbox]` extra."""


def missing_sandbox_modules() -> list[str]:
    return [name for name in SANDBOX_MODULES if find_spec(name) is None]


def require_sandbox(what: str) -> None:
    """Raise SandboxMissing naming the extra when `what` cannot run on this install."""
    missing = missing_sandbox_modules()
    if missing:
        raise SandboxMissing(f"{what} needs the sandbox extra, which is not installed (missing: "
                             f"{', '.join(SANDBOX_MODULES[name] for name in missing)}); install it with: {INSTALL}")
