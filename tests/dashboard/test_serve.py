"""The dashboard as `tidegate serve` mounts it (tidegate.serve.create_app, beside webhooks and /healthz)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from store import SecretBox
from tests.dashboard.world import World
from tidegate.serve import create_app
from tidegate.settings import Settings


def test_tidegate_serve_mounts_the_api_and_pages_behind_authentication(world: World) -> None:
    settings = Settings(data_dir=world.services.data_dir, secret_key=SecretStr(SecretBox.generate_key()))
    with TestClient(create_app(settings, world.services)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/environments").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
        assert client.get("/api/v1/environments", headers=world.auth("vera")).status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/v1/environments/{repository}/{environment}/sync" in paths and "/metrics" in paths
        assert not any(path in paths for path in ("/", "/login", "/drift/{report_id}"))
