"""An HTTP proxy in front of moto that can hold one AWS call in mid-air: the moment a fault
scenario waits for ("terraform apply has sent its write"), observed rather than slept for.

In the spirit of the Kubernetes emulator's `FaultRule`: a `HoldRule` names an AWS action (the
`X-Amz-Target` operation of a JSON API such as DynamoDB's `PutItem`, or the `Action` of a query
API such as EC2's `CreateTags`) and how many calls it holds. A held call is never sent on to moto
while held; `release()` lets it go on (`forward=True`) or drops it as a connection reset, which is
what a client killed meanwhile would have seen. Everything else passes straight through.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.support.faulty_proxy import QuietHandler, operation_of, relay, reset, respond


@dataclass
class HoldRule:
    """Hold the next `times` calls of `action` until released."""

    action: str
    times: int = 1
    hits: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    forward: bool = False


class AwsHoldProxy:
    """The proxy; `url` replaces moto's in the endpoint map the clients are given."""

    def __init__(self, upstream: str) -> None:
        address = urlsplit(upstream).netloc
        self.rules: list[HoldRule] = []
        self.holding: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def forward(self) -> None:
                body = self.body()
                rule = proxy.claim(operation_of(self.headers, body, self.path))
                if rule is not None and not proxy.wait(rule):
                    return reset(self)
                respond(self, *relay(address, self, body, dict(self.headers.items()), timeout=120))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def hold(self, action: str, times: int = 1) -> HoldRule:
        """Hold the next `times` calls of `action` (until `release`)."""
        rule = HoldRule(action, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def held(self) -> list[str]:
        """The actions of the calls held right now."""
        with self.lock:
            return list(self.holding)

    def release(self, *, forward: bool = False) -> None:
        """Let every held call go: on to moto (`forward`), or dropped as a connection reset."""
        with self.lock:
            rules, self.rules = self.rules, []
        for rule in rules:
            rule.forward = forward
            rule.released.set()

    def claim(self, action: str) -> HoldRule | None:
        with self.lock:
            rule = next((r for r in self.rules if r.action == action and r.hits < r.times), None)
            if rule is not None:
                rule.hits += 1
                self.holding.append(action)
            return rule

    def wait(self, rule: HoldRule) -> bool:
        """Block until released; whether the call goes on to moto."""
        rule.released.wait()
        with self.lock:
            self.holding.remove(rule.action)
        return rule.forward

    def __enter__(self) -> AwsHoldProxy:
        threading.Thread(target=self.server.serve_forever, name="aws-hold-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
