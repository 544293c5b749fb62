"""The recording fake host refuses what the real APIs refuse, so a client bug cannot hide behind it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from store import GitHost
from tests.support.git_host import git_host_server

SHA = "a" * 40
GOOD_AUTH = {GitHost.GITHUB: {"Authorization": "Bearer t", "Accept": "application/vnd.github+json",
                              "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "test"},
             GitHost.GITLAB: {"PRIVATE-TOKEN": "t"},
             GitHost.GITEA: {"Authorization": "token t"}}
STATUS_PATH = {GitHost.GITHUB: f"/repos/acme/infra/statuses/{SHA}", GitHost.GITEA: f"/repos/acme/infra/statuses/{SHA}",
               GitHost.GITLAB: f"/projects/acme%2Finfra/statuses/{SHA}"}


@pytest.mark.parametrize("host", list(GitHost)[:3], ids=[h.value for h in list(GitHost)[:3]])
@pytest.mark.parametrize("mistake,headers,path,body,status", [
    pytest.param("no-token", {}, "status", {"state": "pending"}, 401, id="no-token"),
    pytest.param("bad-state", None, "status", {"state": "done"}, 422, id="unknown-status-word"),
    pytest.param("extra-key", None, "status", {"state": "pending", "colour": "green"}, 422, id="undocumented-key"),
    pytest.param("short-sha", None, "/statuses/abc", {"state": "pending"}, 422, id="abbreviated-sha"),
    pytest.param("no-route", None, "/hooks", {}, 404, id="undocumented-route"),
])
def test_a_request_the_real_api_would_refuse_is_refused_and_recorded(host: GitHost, mistake: str,
                                                                    headers: dict[str, str] | None, path: str,
                                                                    body: Any, status: int) -> None:
    with git_host_server(host, "acme/infra", token="t") as fake:
        if host is GitHost.GITLAB and mistake == "bad-state":
            status = 400
        url = STATUS_PATH[host] if path == "status" else STATUS_PATH[host].rsplit("/statuses", 1)[0] + path
        response = httpx.post(fake.api_url + url, json=body, headers=GOOD_AUTH[host] if headers is None else headers)

        assert response.status_code == status
        assert len(fake.problems) == 1 and fake.statuses == {}
