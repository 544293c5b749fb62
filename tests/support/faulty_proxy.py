"""An HTTP proxy in front of the sandbox's moto that fails chosen AWS calls, as a bad network does.

`faults[(operation, n)]` fails the n-th call of an operation (a DynamoDB `X-Amz-Target` or a query
API's `Action=`, e.g. EC2's): "refuse" resets the connection before moto sees the request, "lose"
resets it after moto answered, so the client never reads an answer to a call that was carried out;
"late" holds moto's answer back `late_seconds` (past a client's read timeout) before sending it.

The sandbox answers an SDK's retry of a call it already carried out from its record (keyed by the
`amz-sdk-invocation-id` header). `like_aws=True` gives every forwarded attempt a fresh invocation
id, so moto carries each retry out again as real AWS does: for tests of what a client does then.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "server", "date")


def operation_of(headers: Any, body: bytes, path: str = "") -> str:
    """The AWS operation a request calls: JSON APIs name it in `X-Amz-Target`, query APIs (EC2, IAM,
    STS) in the form body's or the URL's `Action`; "" for REST APIs (S3, EKS)."""
    target = headers.get("X-Amz-Target") or ""
    if target:
        return str(target).rpartition(".")[2]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if "x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
        query = {**query, **urllib.parse.parse_qs(body.decode("utf-8", "replace"))}
    return (query.get("Action") or [""])[0]


class QuietHandler(BaseHTTPRequestHandler):
    """What both moto proxies' handlers share: HTTP/1.1, no access log, the request's body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


def relay(upstream: str, handler: BaseHTTPRequestHandler, body: bytes, headers: dict[str, str],
          timeout: float) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send the handler's request on to `upstream` (host:port); moto's status, headers and body."""
    host, _, port = upstream.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        connection.request(handler.command, handler.path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheaders(), answer.read()
    finally:
        connection.close()


def respond(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
    """Write an answer relayed from moto (its hop-by-hop headers replaced by our own length)."""
    handler.send_response(status)
    for name, value in headers:
        if name.lower() not in HOP_HEADERS:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def reset(handler: BaseHTTPRequestHandler) -> None:
    """Drop the client's connection with a TCP reset, as a network that failed does."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


class FaultyProxy:
    """HTTP proxy to moto that fails chosen calls; `calls` counts each operation's attempts."""

    def __init__(self, upstream: str, faults: dict[tuple[str, int], str], *, like_aws: bool = False,
                 late_seconds: float = 3.0) -> None:
        address = urllib.parse.urlsplit(upstream).netloc
        self.faults = faults
        self.calls: dict[str, int] = {}
        self.invocations: dict[str, set[str]] = {}  # the SDK invocation ids each operation was called with
        self.lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def forward(self) -> None:
                body = self.body()
                operation = operation_of(self.headers, body)
                with proxy.lock:
                    proxy.calls[operation] = count = proxy.calls.get(operation, 0) + 1
                    proxy.invocations.setdefault(operation, set()).add(self.headers.get("amz-sdk-invocation-id", ""))
                fault = proxy.faults.get((operation, count))
                if fault == "refuse":
                    return reset(self)
                headers = dict(self.headers.items())
                if like_aws:
                    headers = {name: value for name, value in headers.items()
                               if name.lower() != "amz-sdk-invocation-id"}
                    headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
                status, answer, data = relay(address, self, body, headers, timeout=60)
                if fault == "lose":
                    return reset(self)
                if fault == "late":
                    time.sleep(late_seconds)
                try:
                    respond(self, status, answer, data)
                except ConnectionError:
                    self.close_connection = True  # the client gave up waiting ("late")

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultyProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
