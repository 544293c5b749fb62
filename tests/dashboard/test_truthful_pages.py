"""The dashboard says what is true (issue 16, item 4), without a browser: a drift report's state
follows its heal sync, the timeline keeps reports apart, diffs mark the words that differ, buttons
appear only for people allowed to press them (and the server still refuses the others), a sync
shows its own plan, and long lists come in pages. The browser stories are in `test_browser_truth`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.drift_state import state_of
from dashboard.presentation import side_by_side
from dashboard.timeline import Episode, lay_out
from store import AuditEvent, DriftReport, DriftResolution, DriftStatus, Sync, SyncLifecycle, SyncTrigger
from store.queries import DriftDecision
from tests.dashboard.test_pages import csrf_of, sign_in
from tests.dashboard.world import T0, World

L = SyncLifecycle


def report(status: DriftStatus = DriftStatus.OPEN, resolution: DriftResolution | None = None) -> DriftReport:
    return DriftReport(id=7, environment_id=1, revision_id=1, status=status, resolution=resolution, created_at=T0,
                       resolved_at=T0 + timedelta(hours=1) if status is DriftStatus.RESOLVED else None)


def heal(status: SyncLifecycle) -> Sync:
    return Sync(id=12, environment_id=1, revision_id=1, trigger=SyncTrigger.DRIFT, status=status,
                created_at=T0 + timedelta(minutes=1))


@pytest.mark.parametrize(("row", "decision", "sync", "label", "note"), [
    (report(), None, None, "open", ""),
    # a person's Heal marks the row `healed` at once; its sync waits for approval
    (report(resolution=DriftResolution.HEALED), DriftDecision(heal_sync_id=12), heal(L.AWAITING_APPROVAL),
     "healing (sync #12)", ""),
    (report(), None, heal(L.PLANNING), "healing (sync #12)", ""),  # selfHeal's sync, found by trigger
    (report(resolution=DriftResolution.HEALED), DriftDecision(heal_sync_id=12), heal(L.FAILED), "open",
     "heal sync #12 failed"),
    (report(DriftStatus.RESOLVED, DriftResolution.HEALED), None, heal(L.SUCCEEDED), "healed (sync #12)", ""),
    (report(DriftStatus.RESOLVED, DriftResolution.ACCEPTED), DriftDecision(accepted_by="otto"), None, "accepted", ""),
    (report(DriftStatus.RESOLVED, DriftResolution.RESYNCED), None, None, "resynced", ""),
], ids=["open", "healing-awaiting-approval", "healing-self-heal", "heal-failed", "healed", "accepted", "resynced"])
def test_a_drift_report_is_healing_until_its_heal_sync_succeeds(row: DriftReport, decision: DriftDecision | None,
                                                                 sync: Sync | None, label: str, note: str) -> None:
    state = state_of(row, decision, sync)
    assert (state.label, state.note) == (label, note)


def episode(report_id: int, opened_hours: float, closed_hours: float | None, env: str = "infra/staging") -> Episode:
    closed = T0 + timedelta(hours=closed_hours) if closed_hours is not None else None
    return Episode(report_id, env, T0 + timedelta(hours=opened_hours), closed, "resynced" if closed else "open", 3,
                   "resynced" if closed else "open")


def test_the_timeline_puts_overlapping_reports_on_rows_of_their_own_and_open_ones_up_to_now() -> None:
    now = T0 + timedelta(hours=10)
    drawn = lay_out([episode(1, 0, 2), episode(2, 1, None), episode(3, 4, 5), episode(4, 0, 1, "infra/production")],
                    now, current=2)
    bars = {int(bar.href.rsplit("/", 1)[-1]): bar for bar in drawn.bars}
    assert [lane.name for lane in drawn.lanes] == ["infra/production", "infra/staging"]
    assert bars[1].y == bars[3].y != bars[2].y  # 2 overlaps 1, so it takes a second row; 3 fits after 1
    assert bars[2].ongoing and bars[2].current and abs(bars[2].x + bars[2].width - drawn.now_x) < 0.01
    assert bars[3].x > bars[1].x + bars[1].width
    assert bars[2].caption == "#2 · 3 items · open" and bars[2].captioned and not bars[4].captioned


@pytest.mark.parametrize(("desired", "live", "left", "right"), [
    ("max_connections = 256", "max_connections = 4096", ["256"], ["4096"]),
    (["198.51.100.0/24"], ["0.0.0.0/0"], ['"198.51.100.0/24"'], ['"0.0.0.0/0"']),
    ({"replicas": 3}, {"replicas": 3, "paused": True}, [], ['"paused": true']),
], ids=["changed-word", "whole-cidr", "only-live-has-it"])
def test_desired_and_live_mark_only_the_words_that_differ(desired: Any, live: Any, left: list[str],
                                                          right: list[str]) -> None:
    rows = side_by_side(desired, live)
    assert [p.text for row in rows for p in row.left if p.changed] == left
    assert [p.text.rstrip(",") for row in rows for p in row.right if p.changed] == right


@pytest.mark.parametrize(("user", "page", "button", "action"), [
    ("vera", "/environments/infra/staging", "Sync now", "/environments/infra/staging/sync"),
    ("vera", "/drift/{drift}", "Heal", "/drift/{drift}/heal"),
    ("vera", "/syncs/{pending}", "Approve", "/syncs/{pending}/approve"),
    ("andy", "/approvals", "Approve", "/syncs/{pending}/approve"),  # an approver production's policy does not name
    ("otto", "/approvals", "Approve", "/syncs/{pending}/approve"),  # an operator: no approve permission
    ("alice", "/approvals", "Approve", "/syncs/{pending}/approve"),  # named, but she wrote the change
    ("alice", "/syncs/{pending}", "Approve", "/syncs/{pending}/approve"),
], ids=["viewer-sync", "viewer-heal", "viewer-approve", "unnamed-approver", "operator-approve", "author-queue",
        "author-sync"])
def test_an_action_is_shown_only_to_those_allowed_and_refused_to_the_others(
        shared_client: tuple[World, TestClient], user: str, page: str, button: str, action: str) -> None:
    world, client = shared_client
    sign_in(client, user)
    html = client.get(page.format(**world.ids)).text
    assert f"{button}</button>" not in html
    refused = client.post(action.format(**world.ids), data={"csrf_token": csrf_of(html)})
    assert refused.status_code == 403


def test_the_approvals_queue_says_who_may_approve(shared_client: tuple[World, TestClient]) -> None:
    _, client = shared_client
    sign_in(client, "paula")
    html = client.get("/approvals").text
    assert "1 of group:platform-leads" in html and "Approve</button>" in html
    assert "Named and allowed: <strong>paula</strong>" in html and "<strong>andy</strong>" not in html
    assert "so may not approve: alice (author)" in html  # named by the rule, but she wrote the change


@pytest.mark.parametrize("page", ["/approvals", "/syncs/{pending}"], ids=["queue", "sync"])
def test_the_author_is_told_she_made_the_change_and_may_only_reject_it(
        shared_client: tuple[World, TestClient], page: str) -> None:
    world, client = shared_client
    sign_in(client, "alice")
    html = client.get(page.format(**world.ids)).text
    assert "You cannot approve: you made this change (alice authored commit " in html
    assert "Reject</button>" in html and "Approve</button>" not in html
    assert f'action="/syncs/{world.ids["pending"]}/reject"' in html  # Enter in the comment rejects, never approves


def test_a_sync_shows_its_own_plan_and_a_plan_number_leads_to_its_sync(
        shared_client: tuple[World, TestClient]) -> None:
    world, client = shared_client
    pending = world.ids["pending"]
    sign_in(client, "vera")
    assert f'href="/syncs/{pending}/plan" id="sync-plan">Sync #{pending}\'s plan</a>' in client.get(
        f"/syncs/{pending}").text
    moved = client.get(f"/plans/{world.ids['plan']}", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == f"/syncs/{pending}/plan"
    assert f"Sync #{pending}</a>'s plan" in client.get(f"/syncs/{pending}/plan").text
    assert "Plan #" not in client.get(f"/syncs/{pending}/plan").text


def test_the_audit_log_comes_in_pages_with_compact_times(client: TestClient, world: World) -> None:
    with world.services.database.session() as session:
        session.add_all(AuditEvent(actor="robot", action="poll", target="infra", details={}, at=T0 + timedelta(
            minutes=n)) for n in range(60))
    sign_in(client, "vera")
    first = client.get("/audit?actor=robot").text
    assert "1\u201350 of 60" in first and 'href="/audit?actor=robot&amp;page=2"' in first
    assert re.search(r'title="2026-11-20 09:59:00 UTC">(Nov 20|2026-11-20) 09:59</time>', first)
    assert "51\u201360 of 60" in client.get("/audit?actor=robot&page=2").text
