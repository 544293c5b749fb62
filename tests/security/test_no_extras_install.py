"""Story: an operator installs Tidegate for production with plain `pip install tidegate` (no extras:
the sandbox's moto, jsonpatch and the Kubernetes API emulator are for the demo and the tests) and
runs `tidegate serve`, `worker` and `beat`. They must work; the sandbox commands must say which
extra to install instead of dying on an import.

The project (this working tree) is installed into a fresh virtualenv by pip, from PyPI or pip's
cache, exactly as an operator would; nothing of the test environment's packages is visible there.

Seen failing before the fix: `tidegate --help` died with ModuleNotFoundError: jsonpatch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".demo", "test-artifacts", "build", "dist", "*.egg-info",
                                    "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
                                    "tests", "bench")
IMPORTS = """
import sys, tempfile
from pathlib import Path
from pydantic import SecretStr
from store import SecretBox
from tidegate.settings import Settings
from tidegate.serve import create_app
from tidegate.worker import make_app, build_services
import reconciler.tasks, reconciler.preview_tasks, drift.tasks
data = Path(tempfile.mkdtemp())
settings = Settings(data_dir=data, secret_key=SecretStr(SecretBox.generate_key()), redis_url="unix:///nonexistent")
from tidegate.wiring import open_store
open_store(settings).database.dispose()
app = create_app(settings)
celery = make_app(settings)
assert "tidegate.apply" in celery.tasks and "tidegate.drift" in celery.tasks and "tidegate.preview" in celery.tasks
assert "/api/v1/environments" in app.openapi()["paths"] and "/webhooks/github" in app.openapi()["paths"]
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("moto", "jsonpatch", "sandbox"))
assert all(name in ("sandbox", "sandbox.aws", "sandbox.nodes") for name in loaded), loaded
print("serve and worker paths import and build")
"""


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding `pip install <this project>` and nothing else."""
    where = tmp_path_factory.mktemp("no-extras")
    source = where / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    venv.create(where / "venv", with_pip=False, clear=True)
    interpreter = where / "venv" / "bin" / "python"
    # The test environment's pip installs into the new interpreter (no download of pip itself).
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(interpreter), "install",
                             "--disable-pip-version-check", "--quiet", str(source)],
                            capture_output=True, text=True, timeout=900, env=_clean_env())
    assert result.returncode == 0, f"pip install . failed:\n{result.stderr[-4000:]}"
    return interpreter


def _clean_env() -> dict[str, str]:
    """No TIDEGATE_* settings or virtualenv of the test run leak into the installed CLI."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("TIDEGATE_", "VIRTUAL_ENV", "PYTHON"))}


def tidegate(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python.parent / "tidegate"), *args], capture_output=True, text=True, timeout=120,
                          env=_clean_env() | {"TIDEGATE_DATA_DIR": str(cwd or python.parent.parent / "data")},
                          cwd=cwd or python.parent.parent)


def test_the_install_really_has_no_sandbox_extra(python: Path) -> None:
    probe = "import importlib.util as u; print([m for m in ('moto', 'jsonpatch') if u.find_spec(m)])"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True,
                            cwd=python.parent.parent)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["worker", "--help"], ["beat", "--help"],
                                  ["init"]], ids=["help", "serve", "worker", "beat", "init"])
def test_the_production_commands_work(python: Path, args: list[str]) -> None:
    result = tidegate(python, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_the_serve_and_worker_code_paths_import_and_build(python: Path) -> None:
    result = subprocess.run([str(python), "-c", IMPORTS], capture_output=True, text=True, timeout=120,
                            cwd=python.parent.parent, env=_clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "serve and worker paths import and build" in result.stdout


@pytest.mark.parametrize("args", [["sandbox", "kube", "--kubeconfig", "kubeconfig"], ["sandbox", "aws"],
                                  ["up", "--exit-when-synced"],
                                  ["plan", "staging", "--repo", str(ROOT / "examples" / "infra-repo"), "--sandbox"]],
                         ids=["sandbox-kube", "sandbox-aws", "up", "plan-sandbox"])
def test_sandbox_commands_name_the_extra_to_install(python: Path, args: list[str]) -> None:
    result = tidegate(python, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'tidegate[sandbox]'" in result.stderr
    assert "Traceback" not in result.stderr
