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


def operation_of(headers: Any, body: bytes) -> str:
    """The AWS operation a request calls: JSON protocols name it in X-Amz-Target, query ones in Action."""
    target = headers.get("X-Amz-Target") or ""
    if target:
        return str(target).rpartition(".")[2]
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", [""])[0]


class FaultyProxy:
    """HTTP proxy to moto that fails chosen calls; `calls` counts each operation's attempts."""

    def __init__(self, upstream: str, faults: dict[tuple[str, int], str], *, like_aws: bool = False,
                 late_seconds: float = 3.0) -> None:
        host, port = upstream.rsplit("/", 1)[1].split(":")
        self.faults = faults
        self.calls: dict[str, int] = {}
        self.invocations: dict[str, set[str]] = {}  # the SDK invocation ids each operation was called with
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = operation_of(self.headers, body)
                with proxy.lock:
                    proxy.calls[operation] = count = proxy.calls.get(operation, 0) + 1
                    proxy.invocations.setdefault(operation, set()).add(self.headers.get("amz-sdk-invocation-id", ""))
                fault = proxy.faults.get((operation, count))
                if fault == "refuse":
                    return self.reset()
                headers = dict(self.headers.items())
                if like_aws:
                    headers = {name: value for name, value in headers.items()
                               if name.lower() != "amz-sdk-invocation-id"}
                    headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if fault == "lose":
                    return self.reset()
                if fault == "late":
                    time.sleep(late_seconds)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    self.close_connection = True  # the client gave up waiting ("late")

            def reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

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
