"""`tidegate serve`: one ASGI app with the REST API and dashboard, the webhook receivers and /healthz.

Composition only. `dashboard.app.create_router` and `webhooks.app.create_router` each get the
reconciler's services (store, Redis, queue) and return a FastAPI router; this module mounts them,
adds the unauthenticated health endpoint and the API docs (`tidegate.docs`), and runs uvicorn.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from reconciler import sealing
from reconciler.runtime import QueueUnavailable, Services
from store import StoreBusy
from tidegate.docs import add_docs
from tidegate.settings import Settings
from tidegate.wiring import install_seal
from tidegate.worker import build_services, make_app


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """The whole HTTP surface; `services` may be given by tests (else built from settings)."""
    from dashboard.app import create_router as dashboard_router
    from webhooks.app import create_router as webhook_router

    make_app(settings)
    install_seal(settings)  # `GET …/diff` plans here: repository code runs sealed as on a worker (fails closed)
    svc = services or build_services(settings)
    app = FastAPI(title="Tidegate", version="0.1.0", description="GitOps reconciler for whole environments: "
                  "Terraform -> Ansible -> Kubernetes. The API lives under /api/v1.", docs_url=None, redoc_url=None)
    add_docs(app)  # served from local files: FastAPI's own pages load their assets from a public CDN

    @app.get("/healthz", tags=["health"], summary="Liveness: answers without authentication")
    def healthz() -> dict[str, Any]:
        """Up; and whether the workers can seal repository code (a worker that cannot refuses it)."""
        workers = sealing.reports(svc.redis)
        return {"status": "ok", "sealed": bool(workers) and all(report.sealed for report in workers),
                "workers": [report.model_dump() for report in workers]}

    @app.exception_handler(StoreBusy)
    async def store_busy(_request: Request, error: StoreBusy) -> JSONResponse:
        """SQLite lost a write race to a worker: nothing was written; the client may simply retry."""
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(QueueUnavailable)
    async def queue_unavailable(_request: Request, error: QueueUnavailable) -> JSONResponse:
        """The broker is down where no route expected it: 503 (whose transaction rolled back), never a 500."""
        return JSONResponse({"detail": f"the work queue is unavailable; try again shortly ({error})"},
                            status_code=503, headers={"Retry-After": "30"})

    app.include_router(webhook_router(svc, settings))
    app.include_router(dashboard_router(svc, settings))
    return app


def serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the API, the dashboard and the webhook receivers."""
    import uvicorn

    settings = Settings()
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(), access_log=False)
