"""The sandbox's moto server: moto's own WSGI app and request handler, behind a retry replay.

An AWS SDK retries a call when it gets no answer: a connection reset or EOF after the request went
out, a timeout. moto has by then often carried the call out, and carrying it out a second time
fails a call that is not idempotent: `RevokeSecurityGroupEgress` finds the rule already gone
(`InvalidPermission.NotFound`), the state lock's conditional `PutItem` finds its own lock
(`ConditionalCheckFailedException`). Under heavy load this failed the first apply of the e2e
bootstrap. Every attempt of one SDK call carries the same `amz-sdk-invocation-id` header (the Go
SDK under Terraform, botocore), so the server records each answer it gave under that id and
answers a retry with the recorded answer instead of carrying the call out again: exactly once, as
the caller meant. A call made anew (a new invocation id) is carried out as usual.

Run as `python -m sandbox.aws_server -H HOST -p PORT` (what `AwsSandbox` starts). GET
`/tidegate-sandbox/replays` lists the retries answered from the record, for tests and diagnosis.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger("sandbox.aws_server")

REPLAYS_PATH = "/tidegate-sandbox/replays"
# Calls that change nothing are safe to carry out again; only the others are recorded.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RECORD_LIMIT = 4096  # answers kept (oldest dropped first): a retry comes within seconds of its call
BODY_LIMIT = 256 * 1024  # larger answers are not recorded (state-file reads are GETs anyway)
BYTES_LIMIT = 64 * 1024 * 1024  # and all recorded answers together stay under this
RETRY_WAIT = 300.0  # how long a retry waits for its first attempt, still running, to finish

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as the app gave it."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Replay:
    """A retry answered from the record: what it was and how long after its first attempt."""

    invocation: str
    attempt: str
    method: str
    path: str
    status: str
    seconds_after_first: float


@dataclass
class _Record:
    """The answer to one invocation, filled in when its first attempt finishes."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None


class RetryReplay:
    """WSGI middleware: carries out each SDK invocation once and answers its retries from the record."""

    def __init__(self, app: WsgiApp, *, limit: int = RECORD_LIMIT, bytes_limit: int = BYTES_LIMIT) -> None:
        self.app = app
        self.limit = limit
        self.bytes_limit = bytes_limit
        self.recorded_bytes = 0
        self.records: OrderedDict[tuple[str, ...], _Record] = OrderedDict()
        self.replays: list[Replay] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == REPLAYS_PATH:
            return self._list_replays(start_response)
        invocation = environ.get("HTTP_AMZ_SDK_INVOCATION_ID", "")
        if not invocation or environ.get("REQUEST_METHOD", "GET") in SAFE_METHODS:
            return self.app(environ, start_response)
        key = (invocation, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        record, first = self._claim(key)
        if first:
            return self._carry_out(key, record, environ, start_response)
        if record.done.wait(RETRY_WAIT) and record.answer is not None:
            return self._replay(record, record.answer, environ, start_response)
        return self.app(environ, start_response)  # its first attempt failed: carry the retry out

    def _claim(self, key: tuple[str, ...]) -> tuple[_Record, bool]:
        with self.lock:
            record = self.records.get(key)
            if record is not None:
                return record, False
            record = self.records[key] = _Record(started=time.monotonic())
            self._evict()
            return record, True

    def _evict(self) -> None:
        """Drop the oldest records beyond the count or the bytes allowed (called holding the lock)."""
        while len(self.records) > self.limit or self.recorded_bytes > self.bytes_limit:
            _, oldest = self.records.popitem(last=False)
            if oldest.answer is not None:
                self.recorded_bytes -= len(oldest.answer.body)

    def _carry_out(self, key: tuple[str, ...], record: _Record, environ: dict[str, Any],
                   start_response: StartResponse) -> Iterable[bytes]:
        """Run the app, keep its answer if a retry may want it (not a server error), then send it."""
        try:
            answer = _collect(self.app, environ)
        except BaseException:
            self._forget(key, record)
            raise
        if answer.status[:1] == "5" or len(answer.body) > BODY_LIMIT:
            self._forget(key, record)
        else:
            with self.lock:
                record.answer = answer
                if self.records.get(key) is record:
                    self.recorded_bytes += len(answer.body)
                    self._evict()
            record.done.set()
        start_response(answer.status, answer.headers)
        return [answer.body]

    def _forget(self, key: tuple[str, ...], record: _Record) -> None:
        with self.lock:
            if self.records.get(key) is record:
                del self.records[key]
        record.done.set()

    def _replay(self, record: _Record, answer: Answer, environ: dict[str, Any],
                start_response: StartResponse) -> Iterable[bytes]:
        replay = Replay(invocation=environ["HTTP_AMZ_SDK_INVOCATION_ID"],
                        attempt=environ.get("HTTP_AMZ_SDK_REQUEST", ""), method=environ["REQUEST_METHOD"],
                        path=environ.get("PATH_INFO", ""), status=answer.status,
                        seconds_after_first=round(time.monotonic() - record.started, 3))
        with self.lock:
            self.replays.append(replay)
        log.warning("answered a retry from the record (its first answer was lost on the way): %s", replay)
        start_response(answer.status, answer.headers)
        return [answer.body]

    def _list_replays(self, start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            body = json.dumps({"replays": [asdict(replay) for replay in self.replays]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _collect(app: WsgiApp, environ: dict[str, Any]) -> Answer:
    """Call a WSGI app and gather its whole answer (moto's answers are built in memory anyway)."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [(status, list(headers))]
        return chunks.append

    chunks: list[bytes] = []
    iterable = app(environ, start_response)
    try:
        chunks.extend(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    return Answer(status=status, headers=headers, body=b"".join(chunks))


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Serve moto as `python -m moto.server` does (threaded werkzeug, moto's handler), behind the replay."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs (queues, presigned) from it
    # Quiet unless something is wrong: a replayed retry, or a request moto failed (werkzeug logs its
    # traceback as an error); werkzeug's banner and one line per request are not written.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, RetryReplay(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
