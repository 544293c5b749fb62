"""The pod subresources only a kubelet serves (exec, attach, portforward, log), answered as the API
server answers them when no node can serve the pod.

The emulator runs nothing: its simulated controllers report pods Running but never bind them to a
node (`spec.nodeName` stays empty), as on a cluster with no schedulable node. For such a pod the API
server answers on its own, before dialling any kubelet (`pkg/registry/core/pod/strategy.go`): 400
`pod NAME does not have a host assigned` for exec, attach and portforward, 204 (no log) for log. The
container is checked first (400s worded as `validateContainer` words them). A pod bound by hand to a
node answers as an unreachable kubelet: 404 when the node does not exist, 500 when it does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.kube import errors
from sandbox.kube.errors import ApiError
from sandbox.kube.store import Obj, Store
from sandbox.kube.types import ResourceType

# subresource -> (discovery kind, verbs, HTTP methods)
SUBRESOURCES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "attach": ("PodAttachOptions", ("create", "get"), ("GET", "POST")),
    "exec": ("PodExecOptions", ("create", "get"), ("GET", "POST")),
    "log": ("Pod", ("get",), ("GET",)),
    "portforward": ("PodPortForwardOptions", ("create", "get"), ("GET", "POST")),
}
KUBELET_PORT = 10250
_PREFERRED_ADDRESSES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")


def serves(rtype: ResourceType, subresource: str) -> bool:
    return rtype.group == "" and rtype.kind == "Pod" and subresource in SUBRESOURCES


def answer(store: Store, rtype: ResourceType, namespace: str, name: str, subresource: str, method: str,
           query: dict[str, str]) -> web.Response:
    """The API server's answer to a connect (or log) request on a pod."""
    if method not in SUBRESOURCES[subresource][2]:
        raise errors.method_not_allowed()
    pod = store.get(rtype, namespace, name)
    if subresource != "portforward":
        _check_container(pod, query.get("container", ""))
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        if subresource == "log":
            return web.Response(status=204)  # no location: the log handler streams nothing
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    raise _unreachable(store, str(node))


def _containers(pod: Obj) -> list[str]:
    """Every container name, in `podutil.VisitContainers` order: init, regular, ephemeral."""
    spec = pod.get("spec") or {}
    return [str(c.get("name")) for part in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(part) or [] if isinstance(c, dict)]


def _check_container(pod: Obj, container: str) -> None:
    name = pod["metadata"]["name"]
    if container:
        if container not in _containers(pod):
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return
    regular = (pod.get("spec") or {}).get("containers") or []
    if not regular:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    if len(regular) > 1:
        raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                 f"[{' '.join(_containers(pod))}]")


def _unreachable(store: Store, node_name: str) -> ApiError:
    """What dialling the node's kubelet gives when nothing listens there."""
    node_type = store.registry.find("", "v1", "nodes")
    node = store.get_stored(node_type, "", node_name) if node_type is not None else None
    if node_type is None or node is None:
        return errors.ApiError(404, "NotFound", f'nodes "{node_name}" not found', {"name": node_name, "kind": "nodes"})
    status: Any = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if isinstance(a, dict)]
    chosen = next((a for kind in _PREFERRED_ADDRESSES for a in addresses if a.get("type") == kind), None)
    if chosen is None:
        known = " ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses)
        return errors.ApiError(500, "", f"no preferred addresses found; known addresses: [{known}]")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or KUBELET_PORT
    return errors.ApiError(500, "", f"error dialing backend: dial tcp {chosen.get('address')}:{port}: connect: "
                           "connection refused")
