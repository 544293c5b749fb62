"""The client interface over HTTP: the CLI pointed at `tidegate serve` (TIDEGATE_SERVER + TIDEGATE_TOKEN).

Same methods and views as `LocalClient`, so every CLI command works unchanged against a remote
installation; identity comes from the API token. `--as` is passed on as `as_user`, which the
server honours for admins only (audited `admin X as Y`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from reconciler.approvals import Decision
from reconciler.diffs import EnvironmentDiff
from reconciler.sealing import SealReport
from tidegate.client import (
    FINISHED,
    ClientError,
    DriftView,
    EnvironmentView,
    LogChunk,
    LogEnd,
    LogEvent,
    StageView,
    SyncView,
    plan_stage,
    stage_summary,
)

BUSY_RETRIES = 10
DIFF_TIMEOUT = 900.0
"""Seconds a diff may take on the server: a Terraform plan of a large state takes minutes."""


class HttpClient:
    def __init__(self, server: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=server.rstrip("/") + "/api/v1", timeout=timeout, transport=transport,
                                 headers={"Authorization": f"Bearer {token}"})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
              timeout: float | None = None) -> Any:
        wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        response = self.http.request(method, path, json=body, timeout=wait)
        for _ in range(BUSY_RETRIES):  # 503 + Retry-After: the server's store was busy and kept nothing
            if response.status_code != 503 or "retry-after" not in response.headers:
                break
            time.sleep(min(float(response.headers["retry-after"]), 5.0))
            response = self.http.request(method, path, json=body, timeout=wait)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ClientError(f"{response.status_code}: {detail}")
        return response.json()

    def _environment(self, name: str) -> dict[str, Any]:
        repository, _, environment = name.rpartition("/")
        found = [e for e in self._call("GET", "/environments")
                 if e["name"] == environment and (not repository or e["repository"] == repository)]
        if len(found) != 1:
            raise ClientError(f"unknown environment {name!r}" if not found else f"{name!r} is ambiguous")
        env: dict[str, Any] = found[0]
        return env

    def workers(self) -> list[SealReport]:
        """The seal status the server's /healthz reports for the workers."""
        response = self.http.get(str(self.http.base_url).removesuffix("/api/v1/").removesuffix("/api/v1") + "/healthz")
        if response.status_code != 200:
            return []
        return [SealReport.model_validate(worker) for worker in response.json().get("workers", [])]

    def status(self) -> list[EnvironmentView]:
        views = []
        for e in self._call("GET", "/environments"):
            last = e.get("last_sync") or {}
            views.append(EnvironmentView(
                e["repository"], e["name"], (e.get("revision") or {}).get("sha"), e["sync_status"], e["health"],
                e["auto_sync_paused"], e["open_drift_reports"], last.get("id"), last.get("status"),
                ((last.get("error") or "").splitlines() or [""])[0][:200], last.get("revision"),
                _iso(e.get("observed_at")), e.get("observation") or ""))
        return views

    def history(self, environment: str, limit: int = 20) -> list[SyncView]:
        env = self._environment(environment)
        rows = self._call("GET", f"/environments/{env['repository']}/{env['name']}/syncs?limit={limit}")
        return [_sync(row, f"{env['repository']}/{env['name']}") for row in rows]

    def show_sync(self, sync_id: int) -> SyncView:
        row = self._call("GET", f"/syncs/{sync_id}")
        view = _sync(row, row["environment"])
        if row.get("plan_id"):
            plan = self._call("GET", f"/plans/{row['plan_id']}")
            view.plan.update({stage["stage"]: plan_stage(stage) for stage in plan["stages"]})
        return view

    def drift(self, environment: str, include_resolved: bool = False) -> list[DriftView]:
        """The API lists one status at a time: open, then (with `include_resolved`) resolved, merged
        newest first like the local client; each report's items come from its detail."""
        env = self._environment(environment)
        key = f"{env['repository']}/{env['name']}"
        statuses = ("open", "resolved") if include_resolved else ("open",)
        briefs = [brief for wanted in statuses
                  for brief in self._call("GET", f"/drift-reports?status={wanted}&environment={key}")]
        briefs.sort(key=lambda brief: (datetime.fromisoformat(brief["created_at"]), brief["id"]), reverse=True)
        return [_drift(self._call("GET", f"/drift-reports/{brief['id']}")) for brief in briefs[:100]]

    def sync(self, environment: str, revision: str | None = None) -> int:
        env = self._environment(environment)
        answer = self._call("POST", f"/environments/{env['repository']}/{env['name']}/sync",
                            {"revision": revision} if revision else None)
        return int(answer["sync_id"])

    def resume(self, environment: str) -> int | None:
        env = self._environment(environment)
        answer = self._call("POST", f"/environments/{env['repository']}/{env['name']}/resume")
        sync_id = answer.get("sync_id")
        return int(sync_id) if sync_id is not None else None

    def approve(self, sync_id: int, comment: str = "", as_user: str | None = None) -> Decision:
        return _decision(self._call("POST", f"/syncs/{sync_id}/approve", _decision_body(comment, as_user)))

    def reject(self, sync_id: int, comment: str = "", as_user: str | None = None) -> Decision:
        return _decision(self._call("POST", f"/syncs/{sync_id}/reject", _decision_body(comment, as_user)))

    def poll(self, repository: str | None = None) -> list[str]:
        names = [r["name"] for r in self._call("GET", "/repositories") if repository in (None, r["name"])]
        for name in names:
            self._call("POST", f"/repositories/{name}/poll")
        return names

    def accept_drift(self, report_id: int, comment: str = "") -> None:
        self._call("POST", f"/drift-reports/{report_id}/accept", {"comment": comment} if comment else None)

    def heal_drift(self, report_id: int) -> int:
        return int(self._call("POST", f"/drift-reports/{report_id}/heal")["sync_id"])

    def follow_logs(self, sync_id: int, follow: bool = True) -> Iterator[LogEvent]:
        """The server-sent events of `GET /syncs/{id}/logs` (the dashboard's live logs). The server
        stops following after its timeout; this connects again, and since every connection starts
        from the beginning of each stage's log, only what was not seen yet is passed on."""
        sent: dict[str, int] = {}
        while True:
            status: str | None = None
            received: dict[str, int] = {}  # where in each stage's log this connection is
            for name, data in self._events(f"/syncs/{sync_id}/logs?follow={'true' if follow else 'false'}"):
                if name == "end":
                    status = str(data["status"])
                    break
                stage, text = str(data["stage"]), str(data["text"])
                start = received.get(stage, 0)
                fresh = text[max(0, sent.get(stage, 0) - start):]
                if fresh:
                    yield LogChunk(stage, fresh)
                received[stage] = start + len(text)
                sent[stage] = max(sent.get(stage, 0), received[stage])
            if status is None or status in FINISHED or not follow:
                yield LogEnd(status or "unknown")
                return

    def diff(self, environment: str) -> EnvironmentDiff:
        """The server plans it (`GET /environments/{repo}/{env}/diff`), with its stage settings and tools."""
        env = self._environment(environment)
        return EnvironmentDiff.model_validate(
            self._call("GET", f"/environments/{env['repository']}/{env['name']}/diff", timeout=DIFF_TIMEOUT))

    def _events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event name, data) of a server-sent event stream; an error status is a ClientError."""
        with self.http.stream("GET", path, timeout=httpx.Timeout(30.0, read=None)) as response:
            if response.status_code >= 400:
                response.read()
                raise ClientError(f"{response.status_code}: {response.text}")
            name, data = "message", ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    name = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    data += line.partition(":")[2].strip()
                elif not line and data:
                    yield name, json.loads(data)
                    name, data = "message", ""


def _sync(row: dict[str, Any], environment: str) -> SyncView:
    stages = [StageView(s["stage"], s["status"], stage_summary(s), s.get("seconds"), s.get("log") or "")
              for s in row.get("stages", []) if s["status"] is not None]  # None: the sync did not reach it
    finished, approved_at = row.get("finished_at"), row.get("approved_at")
    return SyncView(row["id"], environment, row.get("revision"), row["trigger"], row["status"],
                    datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(finished) if finished else None,
                    row.get("error"), row.get("fingerprint"), {}, stages, row.get("commit_subject", ""),
                    tuple(row.get("approved_by", [])), datetime.fromisoformat(approved_at) if approved_at else None,
                    bool(row.get("rollback", False)))


def _iso(moment: str | None) -> str | None:
    """A time from the API (`…Z`) as the local client writes it (`…+00:00`)."""
    return datetime.fromisoformat(moment).isoformat() if moment else None


def _decision_body(comment: str, as_user: str | None) -> dict[str, Any]:
    return {"comment": comment, **({"as_user": as_user} if as_user else {})}


def _decision(row: dict[str, Any]) -> Decision:
    return Decision(row["sync_id"], row["fingerprint"], row["approvals"], row["required"], row["approved"],
                    row.get("detail") or "", row.get("queued", True))


def _drift(row: dict[str, Any]) -> DriftView:
    resolved = row.get("resolved_at")
    items = [{key: item[key] for key in ("stage", "address", "field", "desired", "live")} for item in row["items"]]
    return DriftView(row["id"], row["revision"], row["status"], datetime.fromisoformat(row["created_at"]), items,
                     row["environment"], row.get("resolution"), datetime.fromisoformat(resolved) if resolved else None,
                     row.get("accepted_by"), row.get("accepted_comment") or "", row.get("heal_sync_id"))
