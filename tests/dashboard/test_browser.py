"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against uvicorn on a free port.

Story: paula (an approver named by production's policy) signs in, looks at the overview, opens
staging's drift report and sees desired and live side by side, approves the pending production
sync, and watches it become Synced without reloading. No Celery worker runs here: after the
approval (which queues an apply on the recording queue) the test plays the worker's part, writing
what `reconciler.pipeline` writes while applying and on success (stage rows with logs, the sync's
lifecycle through `reconciler.syncs.transition`, the environment's synced revision and status).

A second story: root sets a stored secret through the /secrets form, sees its fingerprint and never
its value, and deletes it.

Screenshots are kept in test-artifacts/dashboard/ at the repository root (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from reconciler import syncs
from store import Health, Stage, StageStatus, Sync, SyncLifecycle, SyncStageResult, utcnow
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, make_app, serving
from tests.dashboard.test_secrets_api import assert_never_shown
from tests.dashboard.world import PASSWORD, World
from tests.support.doubles import RecordingQueue

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")]


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """The dashboard over this test's store, served by a real uvicorn; yields its base URL."""
    with serving(make_app(world.services)) as url:
        yield url


def start_applying(world: World, sync_id: int) -> None:
    """What the apply worker writes first: the sync is applying, infrastructure is running with a log."""
    with world.services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        syncs.transition(sync, SyncLifecycle.APPLYING)
        sync.stage_results.append(SyncStageResult(stage=Stage.INFRASTRUCTURE, status=StageStatus.APPLYING,
                                                  started_at=utcnow(), log="terraform apply: 1 to change\n"))


def finish_apply(world: World, sync_id: int) -> None:
    """What the apply worker writes on success (as `reconciler.pipeline._finish_succeeded` does)."""
    with world.services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        for row in sync.stage_results:
            row.status, row.finished_at = StageStatus.SUCCEEDED, utcnow()
            row.log += "aws_security_group.nodes: Modifications complete\n"
            row.summary = {"plan": "+0 ~1 -0", "counts": {"configured": 1, "unchanged": 6},
                           "outcomes": {"aws_security_group.nodes": "configured"}, "error": None}
        for stage in (Stage.CONFIGURATION, Stage.WORKLOADS):
            sync.stage_results.append(SyncStageResult(
                stage=stage, status=StageStatus.SUCCEEDED, started_at=utcnow(), finished_at=utcnow(),
                summary={"plan": "+0 ~1 -0" if stage is Stage.WORKLOADS else "+0 ~0 -0", "counts": {"unchanged": 3},
                         "outcomes": {"apps/Deployment/web/web": "configured"} if stage is Stage.WORKLOADS else {},
                         "error": None},
                log=f"{stage.value}: done\n"))
        syncs.transition(sync, SyncLifecycle.SUCCEEDED)
        env = sync.environment
        env.synced_revision_id = sync.revision_id
        env.health = Health.HEALTHY


def test_an_approver_signs_in_reads_drift_and_approves_production_until_it_is_synced(
        server: str, chromium: Any, world: World) -> None:
    expect = playwright_api.expect
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    page.goto(f"{server}/")
    expect(page).to_have_url(f"{server}/login?next=%2F")
    page.fill("input[name=username]", "paula")
    page.fill("input[name=password]", PASSWORD)
    page.screenshot(path=str(ARTIFACTS / "01-login.png"))
    page.click("button[type=submit]")

    staging = page.locator('[data-env="infra/staging"]')
    production = page.locator('[data-env="infra/production"]')
    expect(staging.locator('[data-word="Drifted"]')).to_be_visible()
    expect(staging).to_contain_text("3 items")
    expect(production.locator('[data-word="AwaitingApproval"]')).to_be_visible()
    expect(production).to_contain_text("Alice Author")
    page.screenshot(path=str(ARTIFACTS / "02-overview.png"), full_page=True)

    page.click("nav >> text=Drift")
    page.click(f'a[href="/drift/{world.ids["drift"]}"]')
    changed = page.locator("table.sbs tr.changed", has_text="max_connections")
    expect(changed.locator("td").first).to_have_text("max_connections = 256")
    expect(changed.locator("td").last).to_have_text("max_connections = 4096")
    expect(page.locator("figure.timeline a.episode")).to_have_count(3)
    page.screenshot(path=str(ARTIFACTS / "03-drift-report.png"), full_page=True)

    page.click("nav >> text=Approvals")
    page.fill("input[name=comment]", "three replicas, as planned")
    page.click("button:has-text('Approve')")
    pending = world.ids["pending"]
    expect(page).to_have_url(f"{server}/syncs/{pending}?notice=Approved")
    expect(page.locator("#sync-status [data-word]")).to_have_text("✔ approved")
    assert isinstance(world.services.queue, RecordingQueue) and ("apply", pending) in world.services.queue.sent
    page.screenshot(path=str(ARTIFACTS / "04-approved.png"), full_page=True)

    overview = context.new_page()
    overview.goto(f"{server}/")
    card = overview.locator('[data-env="infra/production"]')
    expect(card.locator('[data-word="OutOfSync"]')).to_be_visible()
    overview.evaluate("window.__notReloaded = true")

    start_applying(world, pending)  # the worker's part, live on the sync page: status and streamed log
    expect(page.locator("#sync-status [data-word]")).to_have_text("◔ applying", timeout=15_000)
    expect(page.locator('pre[data-stage="infrastructure"]')).to_contain_text("1 to change", timeout=15_000)

    finish_apply(world, pending)
    expect(page.locator("#sync-status [data-word]")).to_have_text("✔ succeeded", timeout=15_000)
    expect(page.locator('pre[data-stage="infrastructure"]')).to_contain_text("Modifications complete",
                                                                            timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "05-sync-succeeded.png"), full_page=True)
    expect(card.locator('[data-word="Synced"]')).to_be_visible(timeout=15_000)
    assert overview.evaluate("window.__notReloaded") is True
    overview.screenshot(path=str(ARTIFACTS / "06-overview-synced.png"), full_page=True)
    context.close()


def test_an_admin_sets_a_secret_in_the_form_sees_its_fingerprint_never_its_value_and_deletes_it(
        server: str, chromium: Any, world: World) -> None:
    """root signs in, opens Secrets from the nav, sets a multi-line secret for infra/staging, finds its row
    with a fingerprint while the page's HTML holds the value in no form, then deletes it from its row."""
    expect = playwright_api.expect
    value = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----"
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/login")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    page.click("nav >> text=Secrets")
    expect(page).to_have_url(f"{server}/secrets")
    form = page.locator("form.secret-form")
    form.get_by_label("Name").fill("deploy-key")
    form.get_by_label("Scope").select_option("infra/staging")
    form.get_by_label("Value").fill(value)
    form.get_by_role("button", name="Set secret").click()

    row = page.locator('tr[data-secret="infra/staging:deploy-key"]')
    expect(row).to_be_visible()
    expect(row.locator("code.fingerprint")).to_have_text(re.compile(r"^hmac-sha256:[0-9a-f]{16}$"))
    expect(form.get_by_label("Value")).to_have_value("")
    assert_never_shown(page.content(), value)
    page.screenshot(path=str(ARTIFACTS / "07-secret-set.png"), full_page=True)

    row.locator("button:has-text('Delete')").click()
    expect(page.locator(".notice")).to_contain_text("Secret deploy-key deleted from infra/staging")
    expect(page.locator('tr[data-secret="infra/staging:deploy-key"]')).to_have_count(0)
    expect(page.locator('tr[data-secret="*:registry-password"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "08-secret-deleted.png"), full_page=True)
    context.close()
