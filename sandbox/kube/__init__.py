"""A Kubernetes 1.37 API emulator over real HTTP, for the demo and the tests (issue 3, tier 1).

`KubeSandbox` runs it on a background thread (the pytest fixture wraps it); `serve()` runs it in the
foreground until stopped (`tidegate sandbox kube --port N --kubeconfig FILE`). Nothing outside
`tidegate/` and the tests may import this package.
"""

from sandbox.kube.runner import KubeSandbox, kubeconfig, serve, write_kubeconfig
from sandbox.kube.server import KUBE_GIT_VERSION, FaultRule

__all__ = ["KUBE_GIT_VERSION", "FaultRule", "KubeSandbox", "kubeconfig", "serve", "write_kubeconfig"]
