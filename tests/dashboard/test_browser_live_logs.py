"""A sync's logs arrive in the page line by line while its stage runs (issue 16, item 2), in Chromium.

The real pipeline applies a sync of the example's staging whose infrastructure stage is a real
`terraform` on a small module that takes four seconds (`tests.support.slow_sync`, as the test of
`tidegate logs -f`); vera has the sync page open, unreloaded, and the Terraform line
`terraform_data.slow: Creating...` shows in it while that stage is still applying — through the
page's server-sent events, not a reload and not the whole log written at the stage's end. Afterwards
the environment's resource tree lists the two Terraform resources that apply created.

Screenshots are kept in test-artifacts/dashboard/ (25-26).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from dashboard.identity import Grant, bind, create_user
from providers.stage import Stage
from reconciler import pipeline
from reconciler.runtime import Services
from store import Role
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, make_app, make_services, serving, signed_in
from tests.dashboard.world import PASSWORD
from tests.support.doubles import RecordingQueue
from tests.support.slow_sync import OwnModule, Stub, Targets, manual_sync_of_staging
from tidegate.redis_server import EmbeddedRedis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")]
LINE = "terraform_data.slow: Creating..."


@pytest.fixture
def services(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Services]:
    """A store with the example's staging and vera, a viewer; stages: the slow Terraform module and stubs."""
    built = make_services(tmp_path / "data", redis_server)
    built.targets = Targets()
    with built.database.session() as session:
        create_user(session, "vera", email="vera@example.com", password=PASSWORD)
        bind(session, "user:vera", Grant(Role.VIEWER, "*"))
    yield built
    built.database.dispose()


def test_a_terraform_line_shows_in_the_open_sync_page_while_the_stage_still_applies(
        services: Services, tmp_path: Path, chromium: Any) -> None:
    expect = playwright_api.expect
    infrastructure = OwnModule(tmp_path / "terraform")
    services.stages = lambda name: infrastructure if name is Stage.INFRASTRUCTURE else Stub(name)  # type: ignore[assignment,return-value]
    sync_id = manual_sync_of_staging(services, tmp_path)
    pipeline.plan_sync(services, sync_id)
    assert isinstance(services.queue, RecordingQueue) and services.queue.sent == [("apply", sync_id)]

    with serving(make_app(services)) as site:
        page = signed_in(chromium, site, "vera")
        page.goto(f"{site}/syncs/{sync_id}")
        expect(page.locator("section.logs")).to_have_attribute("data-log-stream", f"/api/v1/syncs/{sync_id}/logs")
        page.evaluate("window.__notReloaded = true")
        applying = threading.Thread(target=pipeline.apply_sync, args=(services, sync_id))
        applying.start()
        try:
            log = page.locator('pre[data-stage="infrastructure"]')
            expect(log).to_contain_text(LINE, timeout=90_000)
            assert infrastructure.ended is None, "the line arrived only after the stage ended"
            page.screenshot(path=str(ARTIFACTS / "25-live-log-while-applying.png"), full_page=True)
        finally:
            applying.join(timeout=120)
        assert infrastructure.ended is not None
        expect(page.locator("#sync-status [data-word]")).to_have_text("✔ succeeded", timeout=15_000)
        expect(log).to_contain_text("Apply complete!")
        assert log.inner_text().count(LINE) == 1, "each line once: the stream appends only what is new"
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot(path=str(ARTIFACTS / "26-live-log-succeeded.png"), full_page=True)

        page.goto(f"{site}/environments/infra/staging")  # what that apply left in Terraform's state, in the tree
        infrastructure = page.locator('#resource-tree section[data-stage="infrastructure"]')
        expect(infrastructure).to_contain_text(f"applied by sync #{sync_id}")
        rows = infrastructure.locator("li.resource")
        expect(rows).to_have_count(2)
        assert rows.evaluate_all("rows => rows.map(r => r.dataset.address)") == ["terraform_data.first",
                                                                                 "terraform_data.slow"]
        expect(rows.locator('[data-word="created"]')).to_have_count(2)
        page.context.close()
