"""The dashboard tells the truth, in a real browser (issue 16, item 4): Debian's chromium, driven by
Playwright, against uvicorn on a free port.

Stories, sharing one store, one server and one Chromium for the module (each leaves the data the
others read alone; the worlds of `test_browser` are separate):

- vera, a viewer, walks the pages and finds no button she may not press; the approvals queue tells
  her who may approve; the audit log's times stay on one line. paula, whom production's policy
  names, finds the buttons on the same pages; andy, an approver the policy does not name, does not;
  alice, whom it names but who wrote the change, finds Reject and is told why Approve is not there.
- the drift timeline: each environment a lane, each report a bar from found to resolved, coloured
  by its state, with gaps between them (not a solid block).
- otto heals staging's drift: the report says `healing (sync #N)` and links that sync, never `open`
  and `healed` together, until the sync succeeds (the test plays the worker's part).
- production's report of 49 items on 25 objects: grouped per object, collapsed, 20 objects a page.
- `/docs` renders from this server alone: every request to another host is refused and counted.

Screenshots are kept in test-artifacts/dashboard/ at the repository root (gitignored).
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import playwright.sync_api as playwright_api
import pytest
from fastapi import FastAPI

from dashboard.app import create_router
from reconciler import syncs
from store import DriftItemRow, DriftReport, DriftResolution, DriftStatus, Revision, Stage, Sync, SyncLifecycle, utcnow
from tests.dashboard.conftest import ARTIFACTS, CHROMIUM, DashboardSettings, make_services, serving, signed_in
from tests.dashboard.world import T0, World
from tidegate.docs import add_docs
from tidegate.redis_server import EmbeddedRedis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")]
LONG_OBJECTS = 25
"""24 Deployments with two drifted fields each and one Terraform resource: 49 items."""


def add_long_report(world: World) -> int:
    """An open drift report of production with 49 items on 25 objects; returns its id."""
    with world.services.database.session() as session:
        old = session.query(Revision).filter_by(sha=world.old_sha).one()
        report = DriftReport(environment_id=world.ids["production"], revision_id=old.id, status=DriftStatus.OPEN,
                             created_at=T0 + timedelta(hours=3))
        report.items = [DriftItemRow(stage=Stage.WORKLOADS, address=f"apps/Deployment/shop/svc-{n:02d}", field=field,
                                     desired=value, live=f"{value}-hotfix" if isinstance(value, str) else value + 2)
                        for n in range(LONG_OBJECTS - 1)
                        for field, value in (("/spec/replicas", 2), ("/spec/template/spec/containers/0/image",
                                                                      f"registry.local/svc-{n:02d}:1.4.2"))]
        report.items.append(DriftItemRow(stage=Stage.INFRASTRUCTURE, address="aws_instance.bastion",
                                         field="instance_type", desired="t3.small", live="t3.large"))
        session.add(report)
        session.flush()
        return report.id


def build_app(world: World) -> FastAPI:
    """What `tidegate.serve.create_app` serves, minus the webhooks: /docs from local files and the dashboard."""
    app = FastAPI(title="Tidegate", version="0.1.0", docs_url=None, redoc_url=None)
    add_docs(app)
    app.include_router(create_router(world.services, DashboardSettings(world.services.data_dir)))
    return app


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
           world_template: tuple[World, str]) -> Iterator[World]:
    """One copy of the dashboard world for the module, plus production's long report."""
    template, key = world_template
    root = tmp_path_factory.mktemp("truth")
    shutil.copytree(template.services.data_dir, root / "data", ignore=shutil.ignore_patterns("git", "checkouts"))
    world = replace(template, services=make_services(root / "data", redis_server, key, migrate=False),
                    ids=dict(template.ids))
    world.services.redis.flushall()
    world.ids["long"] = add_long_report(world)
    yield world
    world.services.database.dispose()


@pytest.fixture(scope="module")
def site(shared: World) -> Iterator[str]:
    """The dashboard served by a real uvicorn for the whole module; yields its base URL."""
    with serving(build_app(shared)) as url:
        yield url


ACTIONS = "button:has-text('Approve'), button:has-text('Reject'), button:has-text('Sync now'), " \
          "button:has-text('auto-sync'), button:has-text('Roll back'), button:has-text('Heal'), " \
          "button:has-text('Accept')"


def test_a_viewer_sees_no_action_she_may_not_take_and_is_told_who_may_approve(
        site: str, chromium: Any, shared: World) -> None:
    expect = playwright_api.expect
    vera = signed_in(chromium, site, "vera", width=1024)
    pending, drift = shared.ids["pending"], shared.ids["drift"]
    for path in ("/environments/infra/staging", "/environments/infra/production", f"/drift/{drift}",
                 f"/syncs/{pending}", "/approvals"):
        vera.goto(f"{site}{path}")
        expect(vera.locator(ACTIONS)).to_have_count(0)
    approval = vera.locator("article.approval")
    expect(approval.locator(".rules")).to_contain_text("group:platform-leads")
    expect(approval.locator(".you")).to_contain_text("you lack the approve permission on infra/production")
    vera.screenshot(path=str(ARTIFACTS / "11-viewer-approvals.png"), full_page=True)

    vera.goto(f"{site}/audit")
    times = vera.locator("table.audit td.time time")
    expect(times.first).to_be_visible()
    heights = times.evaluate_all("cells => cells.map(c => c.getBoundingClientRect().height)")
    line = vera.locator("table.audit td code").first.evaluate("c => c.getBoundingClientRect().height")
    assert heights and max(heights) <= line * 1.5, f"a timestamp wraps: heights {heights}, one line {line}"
    assert vera.locator("table.audit time").first.get_attribute("title", timeout=1000)
    vera.screenshot(path=str(ARTIFACTS / "12-viewer-audit.png"), full_page=True)
    vera.context.close()

    andy = signed_in(chromium, site, "andy")  # approves elsewhere; production's policy does not name him
    andy.goto(f"{site}/approvals")
    expect(andy.locator(".approval .you")).to_contain_text("no rule names you")
    expect(andy.locator(ACTIONS)).to_have_count(0)
    andy.context.close()

    paula = signed_in(chromium, site, "paula")
    paula.goto(f"{site}/approvals")
    expect(paula.locator(".approval .you")).to_contain_text("You may decide")
    expect(paula.locator("article.approval button:has-text('Approve')")).to_be_visible()
    paula.screenshot(path=str(ARTIFACTS / "13-approver-approvals.png"), full_page=True)
    paula.context.close()

    alice = signed_in(chromium, site, "alice")  # the policy names her, but she wrote the change
    alice.goto(f"{site}/approvals")
    expect(alice.locator(".approval .you")).to_contain_text("You cannot approve: you made this change")
    expect(alice.locator("article.approval button:has-text('Approve')")).to_have_count(0)
    expect(alice.locator("article.approval button:has-text('Reject')")).to_be_visible()
    alice.screenshot(path=str(ARTIFACTS / "13b-author-approvals.png"), full_page=True)
    alice.context.close()


def test_the_drift_timeline_draws_each_report_over_time_per_environment(
        site: str, chromium: Any, shared: World) -> None:
    expect = playwright_api.expect
    page = signed_in(chromium, site, "vera")
    page.goto(f"{site}/environments/infra/staging")
    bars = page.locator("figure.timeline a.episode")
    expect(bars).to_have_count(3)
    boxes = sorted(bars.locator("rect").evaluate_all(
        "rects => rects.map(r => { const b = r.getBoundingClientRect(); return [b.x, b.width]; })"))
    plot = page.locator("figure.timeline svg").evaluate("s => s.getBoundingClientRect().width")
    for (x, width), (next_x, _) in itertools.pairwise(boxes):
        assert x + width < next_x, f"reports overlap or touch: {boxes}"
    assert all(width < plot * 0.9 for _, width in boxes[:-1])
    states = bars.evaluate_all("links => links.map(a => a.dataset.state)")
    assert states.count("resynced") == 2 and states[-1] in ("open", "healing", "healed")
    if states[-1] != "healed":
        expect(bars.last).to_have_class(re.compile(r"\bongoing\b"))  # still open: drawn up to now
    expect(page.locator("figure.timeline figcaption")).to_contain_text("resynced")
    page.locator("figure.timeline").screenshot(path=str(ARTIFACTS / "14-timeline-staging.png"))

    page.goto(f"{site}/drift?show=all")
    lanes = page.locator("figure.timeline text.lane-name")
    expect(lanes).to_have_text(["infra/production", "infra/staging"])
    expect(page.locator("figure.timeline a.episode")).to_have_count(4)
    page.locator("figure.timeline a.episode.state-open").first.click()
    expect(page).to_have_url(f"{site}/drift/{shared.ids['long']}")
    expect(page.locator("figure.timeline a.episode.current")).to_have_count(1)
    page.goto(f"{site}/drift?show=all")
    page.screenshot(path=str(ARTIFACTS / "15-timeline-all.png"), full_page=True)
    page.context.close()


def play_the_heal(world: World, sync_id: int, report_id: int) -> None:
    """What the worker writes for a heal sync that plans, applies and succeeds: the sync's lifecycle
    through `reconciler.syncs.transition` and the report resolved as healed (`reconciler.pipeline`)."""
    with world.services.database.session() as session:
        sync = session.get_one(Sync, sync_id)
        for step in (SyncLifecycle.PLANNING, SyncLifecycle.APPROVED, SyncLifecycle.APPLYING, SyncLifecycle.SUCCEEDED):
            syncs.transition(sync, step)
        report = session.get_one(DriftReport, report_id)
        report.status, report.resolution, report.resolved_at = (DriftStatus.RESOLVED, DriftResolution.HEALED,
                                                                utcnow())


def test_a_healed_report_says_healing_with_its_sync_until_that_sync_succeeds(
        site: str, chromium: Any, shared: World) -> None:
    expect = playwright_api.expect
    page = signed_in(chromium, site, "otto")
    report = shared.ids["drift"]
    page.goto(f"{site}/drift/{report}")
    state = page.locator("#drift-state")
    expect(state).to_have_attribute("data-state", "open")
    page.click("button:has-text('Heal')")
    expect(page.locator(".notice")).to_contain_text("Heal requested")
    expect(state).to_have_attribute("data-state", "healing")
    link = state.locator("a.heal-sync")
    expect(link).to_have_text("sync #" + link.get_attribute("href").rsplit("/", 1)[-1])
    sync_id = int(link.get_attribute("href").rsplit("/", 1)[-1])
    expect(state.locator("[data-word]")).to_have_text(["⟲ healing"])  # one word: not `open` and `healed` together
    expect(page.locator("button:has-text('Heal')")).to_have_count(0)  # a heal is already on its way
    page.screenshot(path=str(ARTIFACTS / "16-drift-healing.png"), full_page=True)

    link.click()
    expect(page).to_have_url(f"{site}/syncs/{sync_id}")
    expect(page.locator("dl.times dt:text-is('Started') + dd")).to_have_text("not yet")  # not the creation time
    expect(page.locator("dl.times dt:text-is('Created') + dd time")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "16b-heal-sync-not-started.png"), full_page=True)
    page.go_back()

    play_the_heal(shared, sync_id, report)
    expect(state).to_have_attribute("data-state", "healed", timeout=15_000)  # the head refreshes itself
    expect(state.locator("a.heal-sync")).to_have_text(f"by sync #{sync_id}")
    page.screenshot(path=str(ARTIFACTS / "17-drift-healed.png"), full_page=True)
    page.context.close()


def test_a_report_of_49_items_is_grouped_per_object_collapsed_and_paged(
        site: str, chromium: Any, shared: World) -> None:
    expect = playwright_api.expect
    page = signed_in(chromium, site, "paula")
    page.goto(f"{site}/drift/{shared.ids['long']}")
    objects = page.locator("details.drift-object")
    expect(objects).to_have_count(20)
    expect(page.locator("details.drift-object[open]")).to_have_count(0)
    expect(page.locator("nav.pager").first).to_contain_text("1\u201320 of 25")
    expect(page.locator(".summary")).to_contain_text("25 drifted objects")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2500, f"the first page of the report is {height} px tall"
    page.screenshot(path=str(ARTIFACTS / "18-long-report-page-1.png"), full_page=True)

    bastion = page.locator('details.drift-object[data-address="aws_instance.bastion"]')  # infrastructure first
    bastion.locator("summary").click()
    changed = bastion.locator("table.sbs tr.changed")
    expect(changed.locator("td").first.locator("mark")).to_have_text("t3.small")
    expect(changed.locator("td").last.locator("mark")).to_have_text("t3.large")

    page.locator("nav.pager a[rel=next]").first.click()
    expect(page).to_have_url(f"{site}/drift/{shared.ids['long']}?page=2")
    expect(objects).to_have_count(LONG_OBJECTS - 20)
    last = objects.last
    expect(last.locator("summary")).to_contain_text("2 fields")
    last.locator("summary").click()
    expect(last.locator("table.sbs tr.changed mark")).to_have_text(["2", "4", "registry.local/svc-23:1.4.2",
                                                                     "registry.local/svc-23:1.4.2-hotfix"])
    page.screenshot(path=str(ARTIFACTS / "19-long-report-page-2.png"), full_page=True)
    page.context.close()


def test_the_api_docs_render_from_this_server_alone(site: str, chromium: Any) -> None:
    expect = playwright_api.expect
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    elsewhere: list[str] = []  # this machine is offline anyway: such a request would only fail, so just count it
    page.on("request", lambda request: None if urlsplit(request.url).hostname == "127.0.0.1"
            else elsewhere.append(request.url))
    page.goto(f"{site}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tidegate")
    expect(page.locator(".swagger-ui .opblock-summary").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock-summary").count() > 20
    assert elsewhere == [], f"the docs asked other hosts: {elsewhere}"
    page.screenshot(path=str(ARTIFACTS / "20-api-docs-offline.png"))
    context.close()
