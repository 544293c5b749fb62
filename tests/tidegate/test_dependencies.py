"""What the product imports is what `pip install tidegate[sandbox]` (the demo's install) brings.

The tests run with the `dev` extra, which pulls in far more; an import of a package only `dev`
provides passes every other test and breaks the README's first command on a clean machine.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["tidegate", "repo_schema", "reconciler", "drift", "providers", "webhooks", "dashboard", "store", "sandbox"]


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(roots: list[str]) -> set[str]:
    """Distributions installed for `roots`, following their own (non-extra) requirements."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _installed_by_demo() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = [_name(r) for r in [*project["dependencies"], *project["optional-dependencies"]["sandbox"]]]
    # Extras the product asks of its own dependencies (celery[redis], moto[server], psycopg[binary]).
    extras = {"celery": ["redis", "kombu"], "moto": ["flask", "flask-cors", "werkzeug"], "psycopg": ["psycopg-binary"]}
    return _closure(roots + [extra for root in roots for extra in extras.get(root, [])])


def _imports() -> dict[str, str]:
    """Top-level third-party module → the first product file importing it."""
    found: dict[str, str] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PRODUCT and top != "__future__":
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_product_is_a_runtime_or_sandbox_dependency() -> None:
    installed = _installed_by_demo()
    providers = metadata.packages_distributions()
    missing = {module: where for module, where in _imports().items()
               if not {d.lower().replace("_", "-") for d in providers.get(module, [module])} & installed}
    assert missing == {}, f"imported by the product but only installed by the dev extra: {missing}"


@pytest.mark.parametrize("module", ["kubernetes", "httpx"], ids=["kubernetes-client", "httpx"])
def test_the_import_scan_sees_the_modules_a_clean_clone_once_missed(module: str) -> None:
    assert module in _imports()
