"""`tidegate sandbox kube`: the Kubernetes API emulator the demo and tests use, from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidegate.extras import require_sandbox

out = Console(highlight=False, soft_wrap=True)


def sandbox_kube(
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="Where to write the kubeconfig.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    controller_delay: Annotated[
        float, typer.Option("--controller-delay", help="Seconds before simulated controllers update status.")
    ] = 1.0,
    crd_delay: Annotated[
        float, typer.Option("--crd-delay", help="Seconds before a new CustomResourceDefinition is Established.")
    ] = 0.5,
) -> None:
    """Serve a Kubernetes 1.37 API emulator (HTTPS, in memory) until Ctrl-C; write its kubeconfig."""

    require_sandbox("tidegate sandbox kube")
    from sandbox.kube import serve  # the [sandbox] extra (aiohttp)

    def ready(url: str) -> None:
        out.print(f"Kubernetes API emulator at {url}; kubeconfig {kubeconfig} (Ctrl-C stops it)", markup=False)

    serve(port, kubeconfig, on_ready=ready, controller_delay=controller_delay, crd_delay=crd_delay)


def register(sandbox: typer.Typer) -> None:
    """Add `kube` to the `tidegate sandbox` group."""
    sandbox.command("kube")(sandbox_kube)
