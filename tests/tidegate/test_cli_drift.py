"""`tidegate drift` as people read it and act on it: the CLI through typer's CliRunner, in-process over
a real SQLite store (tests.support.drift_store), acting as the Tidegate user `ops` (an admin) or
`vic` (a viewer); queued work is read from the RecordingQueue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner, Result

from reconciler.runtime import Services
from store import AuditEvent, DriftReport, DriftStatus, Sync, SyncTrigger
from tests.support.doubles import RecordingQueue
from tests.support.drift_store import T0, build_drift_store
from tidegate import cli_drift
from tidegate.cli import app
from tidegate.cli_drift import item_lines
from tidegate.client import LocalClient

OPEN_REPORT = """\
REPORT  DETECTED             REVISION      STATUS  ITEMS
#1      2026-11-01 14:00:00  0123456789ab  open    5

drift report #1 at 0123456789ab: open, 5 items
  infrastructure
    aws_instance.node[0] .instance_type: desired t3.small, live t3.large
    aws_s3_bucket.scratch: desired absent, live present
  configuration
    node-1/Write the config /etc/app.conf:
      --- desired
      +++ live
      @@ -1,3 +1,3 @@
       # managed by tidegate
      -max_connections = 256
      +max_connections = 4096
       log_level = info
  workloads
    ConfigMap web/settings: desired present, live missing
    Deployment web/web .spec.replicas: desired 3, live 5
last observed: never
"""


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_drift_store(tmp_path / "data")
    yield built
    built.database.dispose()


def drift(services: Services, *args: str, login: str = "ops") -> Result:
    """`tidegate drift ARGS` with the in-process client acting as the Tidegate user `login`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_drift, "client", lambda: LocalClient(services, login=login))
        return CliRunner().invoke(app, ["drift", *args])


def test_drift_env_prints_the_table_then_each_open_report_item_by_item(services: Services) -> None:
    result = drift(services, "staging")
    assert (result.exit_code, result.output) == (0, OPEN_REPORT)
    assert drift(services, "list", "staging").output == OPEN_REPORT


K8S = {"stage": "workloads", "address": "apps/Deployment/web/web"}
TF = {"stage": "infrastructure", "address": "aws_instance.node[0]"}
ANSIBLE = {"stage": "configuration", "address": "node-1/Write the config", "field": "/etc/app.conf"}


@pytest.mark.parametrize("item,shown", [
    pytest.param({**K8S, "field": "/spec/replicas", "desired": 3, "live": 5},
                 ["Deployment web/web .spec.replicas: desired 3, live 5"], id="kubernetes-field"),
    pytest.param({**K8S, "field": "/spec/template/spec/containers/0/image", "desired": "web:1.4", "live": "web:1.3"},
                 ["Deployment web/web .spec.template.spec.containers[0].image: desired web:1.4, live web:1.3"],
                 id="kubernetes-list-element"),
    pytest.param({**K8S, "field": "/metadata/annotations/example.com~1owner", "desired": "web", "live": None},
                 ['Deployment web/web .metadata.annotations["example.com/owner"]: desired web, live not set'],
                 id="kubernetes-annotation-unset-live"),
    pytest.param({"stage": "workloads", "address": "/Namespace//web", "field": "/", "desired": "present",
                  "live": None}, ["Namespace web: desired present, live missing"], id="kubernetes-missing-object"),
    pytest.param({**K8S, "field": "/data/replicas", "desired": "3", "live": 3},
                 ['Deployment web/web .data.replicas: desired "3", live 3'], id="a-string-that-reads-as-a-number"),
    pytest.param({**TF, "field": "instance_type", "desired": "t3.small", "live": "t3.large"},
                 ["aws_instance.node[0] .instance_type: desired t3.small, live t3.large"], id="terraform-attribute"),
    pytest.param({**TF, "field": "(resource)", "desired": "present", "live": None},
                 ["aws_instance.node[0]: desired present, live missing"], id="terraform-missing-resource"),
    pytest.param({**TF, "field": "user_data", "desired": " ".join(["word"] * 30), "live": "short"},
                 ["aws_instance.node[0] .user_data: desired " + " ".join(["word"] * 11) + "…, live short"],
                 id="a-long-value-is-cut-at-a-word"),
    pytest.param({**ANSIBLE, "desired": "port = 80\nworkers = 4\n", "live": "port = 80\nworkers = 8\n"},
                 ["node-1/Write the config /etc/app.conf:", "  --- desired", "  +++ live", "  @@ -1,2 +1,2 @@",
                  "   port = 80", "  -workers = 4", "  +workers = 8"], id="ansible-file-as-a-diff"),
    pytest.param({**ANSIBLE, "desired": "port = 80\nworkers = 4\n", "live": None},
                 ["node-1/Write the config /etc/app.conf:", "  --- desired", "  +++ live (missing)",
                  "  @@ -1,2 +0,0 @@", "  -port = 80", "  -workers = 4"], id="ansible-missing-file"),
    pytest.param({**ANSIBLE, "field": "/srv/app", "desired": "present", "live": "absent"},
                 ["node-1/Write the config /srv/app: desired present, live absent"], id="ansible-present-absent"),
])
def test_drift_items_read_as_people_say_them(item: dict[str, Any], shown: list[str]) -> None:
    assert item_lines(item) == shown


def test_all_also_lists_resolved_reports_without_their_items(services: Services) -> None:
    lines = drift(services, "staging", "--all").output.splitlines()
    assert lines[:3] == [
        "REPORT  DETECTED             REVISION      STATUS    ITEMS",
        "#1      2026-11-01 14:00:00  0123456789ab  open      5",
        "#2      2026-10-30 14:00:00  fedcba987654  resolved  1",
    ]
    assert [line for line in lines if line.startswith("drift report")] == ["drift report #1 at 0123456789ab: "
                                                                           "open, 5 items"]


def test_accept_resolves_the_report_and_audits_who_and_why(services: Services) -> None:
    result = drift(services, "accept", "1", "--comment", "scaled up for the sale")
    assert (result.exit_code, result.output) == (0, "drift report #1 accepted: the live state stays as it is\n")
    assert drift(services, "staging").output == "staging: no open drift\nlast observed: never\n"
    assert drift(services, "staging", "--all").output.splitlines()[1] == \
        "#1      2026-11-01 14:00:00  0123456789ab  accepted by ops  5"
    with services.database.session() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "drift.accepted")).one()
        assert (event.actor, event.target, event.details["comment"]) == ("ops", "infra/staging",
                                                                          "scaled up for the sale")
    assert queue(services).sent == []


def test_heal_queues_a_sync_of_the_drifted_revision_and_the_report_says_so(services: Services) -> None:
    result = drift(services, "heal", "1")
    assert (result.exit_code, result.output) == (0, "drift report #1: healing with sync #1\n")
    assert queue(services).sent == [("plan", 1)]
    with services.database.session() as session:
        sync = session.get_one(Sync, 1)
        assert (sync.trigger, sync.revision.sha[:12] if sync.revision else None) == (SyncTrigger.DRIFT, "0123456789ab")
        session.get_one(DriftReport, 1).status = DriftStatus.RESOLVED  # the next clean check closes it as healed
    lines = drift(services, "staging", "--all").output.splitlines()
    assert lines[1] == "#1      2026-11-01 14:00:00  0123456789ab  healed    5"


def test_a_report_being_healed_says_by_which_sync(services: Services) -> None:
    drift(services, "heal", "1")
    assert drift(services, "staging").output.splitlines()[:3] == [
        "REPORT  DETECTED             REVISION      STATUS             ITEMS",
        "#1      2026-11-01 14:00:00  0123456789ab  healing (sync #1)  5", ""]


@pytest.mark.parametrize("args,login,message", [
    pytest.param(("accept", "9"), "ops", "error: no drift report 9", id="unknown-report"),
    pytest.param(("heal", "2"), "ops", "error: drift report 2 is already resolved (resynced)", id="resolved"),
    pytest.param(("accept", "1"), "vic", "error: vic lacks the operate permission on infra/staging",
                 id="lacking-permission"),
    pytest.param(("production",), "ops", "error: unknown environment 'production'", id="unknown-environment"),
])
def test_refusals_are_one_line_and_exit_1(services: Services, args: tuple[str, ...], login: str,
                                          message: str) -> None:
    result = drift(services, *args, login=login)
    assert (result.exit_code, result.output) == (1, message + "\n")
    assert queue(services).sent == []


@pytest.mark.parametrize("output,load", [pytest.param("json", json.loads, id="json"),
                                         pytest.param("yaml", yaml.safe_load, id="yaml")])
def test_output_for_scripts_is_every_report_with_its_items(services: Services, output: str, load: Any) -> None:
    result = drift(services, "staging", "--all", "-o", output)
    reports = load(result.output)
    assert [(r["id"], r["state"], r["status"], r["resolution"]) for r in reports] == [
        (1, "open", "open", None), (2, "resolved", "resolved", "resynced")]
    assert reports[0]["created_at"] == T0.isoformat() and reports[0]["environment"] == "infra/staging"
    assert {"stage": "workloads", "address": "/ConfigMap/web/settings", "field": "/", "desired": "present",
            "live": None} in reports[0]["items"]


def test_without_drift_it_says_so(services: Services) -> None:
    drift(services, "accept", "1")
    assert drift(services, "staging", "-o", "json").output == "[]\n"
    assert drift(services, "staging").output == "staging: no open drift\nlast observed: never\n"


def test_an_item_with_no_values_says_it_would_change() -> None:
    item = {"stage": "configuration", "address": "node-1/Restart app", "field": "", "desired": None, "live": None}
    assert item_lines(item) == ["node-1/Restart app: would change (the check gave no values)"]


def test_a_one_line_text_is_not_diffed_and_whitespace_differences_are_named() -> None:
    assert item_lines({**ANSIBLE, "desired": "on\n", "live": "off\n"}) == [
        "node-1/Write the config /etc/app.conf: desired on, live off"]
    assert item_lines({**ANSIBLE, "desired": "on\n", "live": "on"}) == [
        "node-1/Write the config /etc/app.conf: desired on, live on (they differ only in whitespace)"]


def queue(services: Services) -> RecordingQueue:
    assert isinstance(services.queue, RecordingQueue)
    return services.queue



def test_drift_alone_shows_its_commands(services: Services) -> None:
    for args in ((), ("--help",)):
        result = drift(services, *args)
        assert all(command in result.output for command in ("list", "accept", "heal")), result.output
