"""A connection to one cluster: the official `kubernetes` client, its DynamicClient, and retries.

Connect from a kubeconfig file or from kubeconfig content handed over by an earlier stage
(`KubeClient.connect(path=...)` / `KubeClient.connect(content=...)`). Every API call goes through
`KubeClient.call`, which retries with exponential backoff and full jitter on 429 (honouring
`Retry-After`), 5xx and connection errors or timeouts — never on other 4xx answers, which are the
API's verdict on what we sent. A 403 is permanent: it fails at once with `PermissionDenied`.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    DynamicApiError,
    ResourceNotFoundError,
)

FIELD_MANAGER = "tidegate"
T = TypeVar("T")


class KubeError(Exception):
    """An API call failed for good; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, reason: str = "", body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body: Mapping[str, Any] = body or {}


class PermissionDenied(KubeError):
    """403: the credentials may not do this; retrying cannot help."""


class UnknownKind(KubeError):
    """The API serves no resource for this apiVersion and kind."""


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    attempts: int = 6
    base: float = 0.05
    cap: float = 5.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


def _status_of(error: BaseException) -> int | None:
    if isinstance(error, (ApiException, DynamicApiError)):
        return int(getattr(error, "status", 0) or 0)
    return None


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(error, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _body(error: BaseException) -> dict[str, Any]:
    raw = getattr(error, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if isinstance(raw, str) and raw:
        try:
            loaded = yaml.safe_load(raw)
        except yaml.YAMLError:
            return {"message": raw}
        return loaded if isinstance(loaded, dict) else {"message": raw}
    return {}


def retryable(error: BaseException) -> bool:
    status = _status_of(error)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(error, (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError))


def as_kube_error(error: BaseException, what: str) -> KubeError:
    status = _status_of(error) or 0
    body = _body(error)
    message = str(body.get("message") or getattr(error, "reason", "") or error)
    reason = str(body.get("reason") or "")
    if status == 403:
        return PermissionDenied(f"{what}: permission denied (403): {message}", status, reason, body)
    return KubeError(f"{what}: {message}" + (f" ({status})" if status else ""), status, reason, body)


POOL_SIZE = 64
"""Connections kept per API server: room for every watch of one environment and its other calls."""


class KubeClient:
    """One cluster. `dynamic` is the official DynamicClient; use `call` for anything retried."""

    def __init__(self, api_client: Any, retry: RetryPolicy | None = None, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._dynamic: Any = None
        self._cache_file = _discovery_cache(api_client)

    @classmethod
    def connect(
        cls,
        *,
        path: Path | str | None = None,
        content: str | Mapping[str, Any] | None = None,
        context: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> KubeClient:
        """From a kubeconfig file or kubeconfig content (YAML text or a parsed mapping)."""
        if (path is None) == (content is None):
            raise ValueError("give exactly one of a kubeconfig path or kubeconfig content")
        configuration = Configuration()
        if path is not None:
            kube_config.load_kube_config(config_file=str(path), context=context,  # type: ignore[no-untyped-call]
                                         client_configuration=configuration, persist_config=False)
        else:
            data = yaml.safe_load(content) if isinstance(content, str) else dict(content or {})
            if not isinstance(data, dict):
                raise ValueError("kubeconfig content is not a YAML mapping")
            kube_config.load_kube_config_from_dict(data, context=context,  # type: ignore[no-untyped-call]
                                                   client_configuration=configuration, persist_config=False)
        configuration.retries = False  # our own retry loop decides; urllib3 must not retry behind it
        # The default (5 per CPU: 10 here) is fewer than the long-lived watches one environment's
        # live watcher holds (one per kind and namespace) plus the calls beside them; urllib3 then
        # opens and throws away a connection per call and logs "Connection pool is full".
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, POOL_SIZE)
        return cls(ApiClient(configuration=configuration), retry, timeout)

    def call(self, fn: Callable[..., T], *args: Any, what: str = "request", **kwargs: Any) -> T:
        """Run one API call with retries; failures become `KubeError` (403: `PermissionDenied`)."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except ResourceNotFoundError:
                raise
            except Exception as error:
                if not retryable(error) or attempt + 1 >= self.retry.attempts:
                    if isinstance(error, KubeError):
                        raise
                    raise as_kube_error(error, what) from error
                self.retry.sleep(self.retry.delay(attempt, _retry_after(error)))
                attempt += 1

    @property
    def dynamic(self) -> Any:
        if self._dynamic is None:
            self._dynamic = self.call(DynamicClient, self.api_client, cache_file=self._cache_file, what="discovery")
        return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any:
        """The API resource for a kind, refreshing discovery once if it is not (yet) known."""
        for refresh in (False, True):
            try:
                if refresh:
                    self.call(self.dynamic.resources.invalidate_cache, what="discovery")
                return self.call(self.dynamic.resources.get, api_version=api_version, kind=kind,
                                 what=f"discovery of {api_version} {kind}")
            except ResourceNotFoundError:
                continue
        raise UnknownKind(f"the API serves no {kind} in {api_version}", 404, "NotFound")

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.resource(api_version, kind).namespaced)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind)
        try:
            result = self.call(resource.get, name=name, namespace=namespace or None, serializer=_as_dict,
                               _request_timeout=self.timeout, what=f"get {kind} {name}")
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return _plain(result)

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind)
        result = _plain(self.call(resource.get, namespace=namespace or None, label_selector=label_selector,
                                  serializer=_as_dict, _request_timeout=self.timeout, what=f"list {kind}"))
        items = [item for item in result.get("items") or [] if isinstance(item, dict)]
        for item in items:  # a list's items do not repeat them; every comparison needs them
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, body: Mapping[str, Any], *, dry_run: bool = False, force: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager `tidegate` (dryRun=All when `dry_run`)."""
        api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
        metadata = body.get("metadata") or {}
        resource = self.resource(api_version, kind)
        name = str(metadata.get("name", ""))
        namespace = metadata.get("namespace") if resource.namespaced else None
        result = self.call(
            resource.server_side_apply, body=dict(body), name=name, namespace=namespace,
            field_manager=FIELD_MANAGER, force_conflicts=True if force else None,
            dry_run="All" if dry_run else None, serializer=_as_dict, _request_timeout=self.timeout,
            what=f"{'dry-run ' if dry_run else ''}apply {kind} {name}",
        )
        return _plain(result)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str = "Background") -> bool:
        """Delete (Background propagation unless told); False when it was already gone."""
        resource = self.resource(api_version, kind)
        try:
            self.call(resource.delete, name=name, namespace=namespace or None,
                      propagation_policy=propagation, _request_timeout=self.timeout,
                      what=f"delete {kind} {name}")
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self.api_client.close()


_CACHE_DIR: str | None = None


def _discovery_cache(api_client: Any) -> str:
    """This process's discovery cache file for one server and identity.

    Every plan, apply and health wait opens its own client; without a shared cache each one would
    re-discover every API group (some forty requests). The library's default file in /tmp is keyed
    by host:port only, so a different server on a reused port would be answered from it: the key
    here also covers the credentials and the CA, and the directory is this process's own. A kind
    the cache does not know makes `resource` refresh it once (a CRD created since)."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _CACHE_DIR = tempfile.mkdtemp(prefix="tidegate-discovery-")
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    configuration = api_client.configuration
    ca = b""
    if configuration.ssl_ca_cert and os.path.exists(str(configuration.ssl_ca_cert)):
        ca = Path(str(configuration.ssl_ca_cert)).read_bytes()
    identity = json.dumps([configuration.host, sorted((configuration.api_key or {}).items()),
                           str(configuration.cert_file or ""), hashlib.sha256(ca).hexdigest()], default=str)
    return os.path.join(_CACHE_DIR, hashlib.sha256(identity.encode()).hexdigest() + ".json")


def _as_dict(_client: Any, data: Any) -> Any:
    """The DynamicClient's serializer hook: the decoded JSON as it is. Its default wraps every
    nested mapping in a `ResourceField`, which costs more than the request for a large list."""
    return data


def _plain(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    to_dict = getattr(result, "to_dict", None)
    value = to_dict() if callable(to_dict) else result
    return value if isinstance(value, dict) else {}
