"""The live resource tree of an environment, in a real browser (issue 16, item 4): Debian's chromium,
driven by Playwright, against uvicorn, over a real cluster.

The dashboard world's staging is applied for real: the example repo's workloads, rendered at the
synced revision, through the real Kubernetes stage into the sandbox's API emulator (the kubeconfig
is the Terraform output the infrastructure stage recorded, as after a real sync). Its live world is
then looked at as workers look at it — `drift.detect.check` with the startup trigger, which judges
kstatus health and diffs the workloads — and the tree shows that look:

- vera opens staging: every object under its workload with a kind icon, health and sync state; the
  Terraform resources of the last apply (the world's drifted security group OutOfSync); the Ansible
  hosts with their last result;
- someone deletes the web Service and scales the web Deployment by hand; the next look makes the
  Service `Missing` and the Deployment `OutOfSync` in the page, without reloading it;
- one click on the Deployment shows its live YAML and the replicas desired against live; on the
  Service, that it is not in the cluster; on the Secret, its keys with masked values, never the data;
  on the security group and on node-1, their drift.

Screenshots are kept in test-artifacts/dashboard/ (21-24b).
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from drift.detect import STARTUP, check
from providers.kubernetes.client import KubeClient
from providers.kubernetes.stage import KubernetesStage
from providers.stage import Stage
from reconciler import repositories
from reconciler.session import open_session, recorded_outputs
from reconciler.targets import Connection
from sandbox.kube import KubeSandbox
from store import Environment, Revision, SyncStageResult
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, make_app, make_services, serving, signed_in
from tests.dashboard.world import World
from tidegate.redis_server import EmbeddedRedis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")]
SECRET_DATA = "cG9zdGdyZXM6Ly93ZWI6ZGVtby1kYXRhYmFzZS1wYXNzd29yZEBkYi53ZWIuc3ZjOjU0MzIvd2Vi"
"""The example's web-database Secret value (base64 of a URL with a password)."""
TERRAFORM = ["aws_instance.node[0]", "aws_instance.node[1]", "aws_security_group.nodes", "module.network.aws_vpc.main"]
HOSTS = {"node-1": {"status": "ok", "ok": 7, "changed": 1, "skipped": 2, "unpredictable": 0, "error": None},
         "node-2": {"status": "unreachable", "ok": 0, "changed": 0, "skipped": 0, "unpredictable": 0,
                    "error": "ssh: connect to host 198.51.100.12 port 22: No route to host"}}


@dataclass
class ClusterTargets:
    """Where staging's stages run: its workloads in the emulator the recorded kubeconfig names."""

    def workloads(self, repository: str, environment: str, kubeconfig: str | None) -> Connection:
        return Connection({}, {"kubeconfig": kubeconfig or ""})

    def secret(self, repository: str, environment: str, name: str, where: str) -> str:
        raise AssertionError(f"the example's staging reads no stored secret ({where})")


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeSandbox]:
    with KubeSandbox(bookmark_interval=0.2, controller_delay=0.02, crd_delay=0.2) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
            world_template: tuple[World, str], cluster: KubeSandbox) -> Iterator[World]:
    """A copy of the dashboard world whose staging runs in `cluster`, applied and looked at once."""
    template, key = world_template
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(template.services.data_dir, root / "data", ignore=shutil.ignore_patterns("git", "checkouts"))
    services = make_services(root / "data", redis_server, key, migrate=False)
    services.redis.flushall()
    services.targets = ClusterTargets()  # type: ignore[assignment]
    services.health_timeout = 60
    world = replace(template, services=services, ids=dict(template.ids))
    kubeconfig = cluster.write_kubeconfig(root / "kubeconfig").read_text()
    _record_last_sync(world, kubeconfig)
    _apply_workloads(world)
    look(world)
    yield world
    services.database.dispose()


def _record_last_sync(world: World, kubeconfig: str) -> None:
    """What staging's last sync recorded: Terraform's outputs (the kubeconfig) and the resources its
    apply kept, and the hosts Ansible ran on."""
    seal = world.services.secrets.seal_json
    with world.services.database.session() as session:
        rows = {row.stage: row for row in session.query(SyncStageResult).filter_by(sync_id=world.ids["staging_head"])}
        infra, conf = rows[Stage.INFRASTRUCTURE], rows[Stage.CONFIGURATION]
        infra.outputs = seal({"values": {"kubeconfig": kubeconfig}, "sensitive": ["kubeconfig"]})
        infra.summary = {**infra.summary, "outcomes": {"aws_instance.node[1]": "created"},
                         "kept": [a for a in TERRAFORM if a != "aws_instance.node[1]"]}
        conf.outputs = seal({"values": {"hosts": HOSTS}, "sensitive": []})


def _session(world: World) -> Any:
    with world.services.database.session() as session:
        env = session.get_one(Environment, world.ids["staging"])
        sha = session.get_one(Revision, env.synced_revision_id).sha
        recorded = recorded_outputs(world.services, session, env.id)
        checkout = repositories.checkout(world.services, env.repository, sha)
    return open_session(world.services, "infra", "staging", sha, checkout, recorded)


def _apply_workloads(world: World) -> None:
    """The sync's workloads stage, for real: plan and apply the example's manifests, health awaited."""
    context = _session(world).context(Stage.WORKLOADS)
    assert context is not None
    stage = KubernetesStage()
    result = stage.apply(context, stage.plan(context))
    assert result.succeeded, result.error


def look(world: World) -> None:
    """A worker's look at staging's live world (the startup check: the stages that judge health)."""
    observation = check(world.services, world.ids["staging"], STARTUP)
    assert observation.skipped is None and observation.assessed, observation


@pytest.fixture(scope="module")
def site(staging: World) -> Iterator[str]:
    with serving(make_app(staging.services)) as url:
        yield url


def kube(cluster: KubeSandbox, tmp_path: Path) -> KubeClient:
    return KubeClient.connect(path=cluster.write_kubeconfig(tmp_path / "kubeconfig"))


def resource(page: Any, address: str) -> Any:
    return page.locator(f'#resource-tree li.resource[data-address="{address}"]')


DEPLOYMENT, SERVICE, SECRET = "apps/Deployment/web/web", "/Service/web/web", "/Secret/web/web-database"


def test_the_tree_shows_every_object_with_health_and_sync_a_deleted_one_missing_and_a_click_shows_yaml_and_diff(
        site: str, chromium: Any, staging: World, cluster: KubeSandbox, tmp_path: Path) -> None:
    expect = playwright_api.expect
    page = signed_in(chromium, site, "vera")
    page.goto(f"{site}/environments/infra/staging")

    workloads = page.locator('#resource-tree section[data-stage="workloads"]')
    expect(workloads.locator("li.branch")).to_have_count(4)  # platform, settings, web, worker
    web = workloads.locator('li.branch[data-branch="web"]')
    for address, kind in ((DEPLOYMENT, "Deployment"), (SERVICE, "Service"), (SECRET, "Secret")):
        row = web.locator(f'li.resource[data-address="{address}"]')
        expect(row).to_have_attribute("data-sync", "Synced")
        expect(row).to_have_attribute("data-health", "Healthy")
        expect(row.locator("svg.kind-icon")).to_have_attribute("data-kind", kind)
    healths = workloads.locator("li.resource").evaluate_all("rows => rows.map(r => r.dataset.health)")
    assert healths and set(healths) == {"Healthy"}, healths

    infrastructure = page.locator('#resource-tree section[data-stage="infrastructure"]')
    expect(infrastructure.locator("li.resource")).to_have_count(len(TERRAFORM))
    expect(resource(page, "aws_security_group.nodes")).to_have_attribute("data-sync", "OutOfSync")  # the world's drift
    expect(resource(page, "aws_instance.node[1]").locator('[data-word="created"]')).to_be_visible()
    expect(infrastructure.locator('li.branch[data-branch="module.network"]')).to_contain_text("main")
    expect(resource(page, "node-1").locator('[data-word="ok"]')).to_be_visible()
    expect(resource(page, "node-1")).to_have_attribute("data-sync", "OutOfSync")  # its config file drifted
    expect(resource(page, "node-2").locator('[data-word="unreachable"]')).to_be_visible()
    page.locator("#resource-tree").screenshot(path=str(ARTIFACTS / "21-tree-healthy.png"))

    client = kube(cluster, tmp_path)
    try:  # someone with kubectl: the Service deleted, the Deployment scaled
        client.delete("v1", "Service", "web", "web")
        deployments = client.resource("apps/v1", "Deployment")
        client.call(deployments.patch, name="web", namespace="web", body={"spec": {"replicas": 5}},
                    content_type="application/merge-patch+json")
    finally:
        client.close()
    page.evaluate("window.__notReloaded = true")
    look(staging)
    expect(resource(page, SERVICE)).to_have_attribute("data-sync", "Missing", timeout=15_000)  # refreshed in place
    expect(resource(page, SERVICE)).to_have_attribute("data-health", "Missing")
    expect(resource(page, DEPLOYMENT)).to_have_attribute("data-sync", "OutOfSync")
    expect(resource(page, DEPLOYMENT).locator(".drifted")).to_contain_text("/spec/replicas")
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(ARTIFACTS / "22-tree-missing-and-drifted.png"), full_page=True)

    resource(page, DEPLOYMENT).locator("a.object").click()
    expect(page.locator("#object-state")).to_have_attribute("data-sync", "OutOfSync")
    live = page.locator("#live-yaml")
    expect(live).to_contain_text("kind: Deployment")
    expect(live).to_contain_text("replicas: 5")
    assert "managedFields" not in live.inner_text()
    changed = page.locator("#object-diff table.sbs tr.changed")
    expect(changed.locator("td").last.locator("mark")).to_have_text("5")
    page.screenshot(path=str(ARTIFACTS / "23-object-deployment.png"), full_page=True)

    page.go_back()
    resource(page, SERVICE).locator("a.object").click()
    expect(page.locator("#object-live")).to_contain_text("It is not in the cluster now")
    expect(page.locator("#object-diff")).to_contain_text("whole object")
    page.screenshot(path=str(ARTIFACTS / "24-object-missing.png"), full_page=True)

    page.go_back()
    resource(page, SECRET).locator("a.object").click()
    expect(page.locator("#live-yaml")).to_contain_text("DATABASE_URL:")
    shown = page.content()
    assert SECRET_DATA not in shown and base64.b64decode(SECRET_DATA).decode() not in shown
    assert re.search(r"DATABASE_URL: '?\(sensitive\)", page.locator("#live-yaml").inner_text()), "masked"

    page.go_back()  # a Terraform resource and a host: their drift, and no live YAML (no stage reads one)
    resource(page, "aws_security_group.nodes").locator("a.object").click()
    expect(page.locator("#object-diff table.sbs tr.changed td").last.locator("mark").first).to_contain_text(
        "0.0.0.0/0")
    expect(page.locator("#object-live")).to_have_count(0)
    page.go_back()
    resource(page, "node-1").locator("a.object").click()
    expect(page.locator("#object-diff h3")).to_contain_text("Write the app config /etc/app/app.conf")
    expect(page.locator("#object-diff tr.changed mark")).to_have_text(["256", "4096"])
    page.screenshot(path=str(ARTIFACTS / "24b-object-host.png"), full_page=True)
    page.context.close()


def test_the_api_twins_give_the_tree_and_one_live_object(site: str, staging: World) -> None:
    import httpx

    headers = staging.auth("vera")
    tree = httpx.get(f"{site}/api/v1/environments/infra/staging/resources", headers=headers).json()
    by_address = {r["address"]: r for r in tree["resources"]}
    assert by_address[DEPLOYMENT]["kind"] == "Deployment" and by_address[DEPLOYMENT]["group"] == "web"
    assert by_address["node-2"]["result"] == "unreachable" and by_address["node-2"]["stage"] == "configuration"
    assert tree["sources"]["workloads"] == "observed live"
    secret = httpx.get(f"{site}/api/v1/environments/infra/staging/resources/workloads/live",
                       params={"address": SECRET}, headers=headers).json()
    assert secret["error"] is None and set(secret["live"]["data"]) == {"DATABASE_URL"}
    assert SECRET_DATA not in str(secret)
    unknown = httpx.get(f"{site}/api/v1/environments/infra/staging/resources/workloads/live",
                        params={"address": "apps/Deployment/web/nope"}, headers=headers)
    assert unknown.status_code == 404
