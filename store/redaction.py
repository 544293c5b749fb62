"""Redaction by value: every secret this process holds is masked in everything Tidegate writes.

Providers mask what they know (Terraform's sensitive values, a run's credentials), but text reaches
the store, the logs and pull request comments from many places: a plan diff that prints a value a
repo's code read, an error message, a drift value. So, as CI systems mask secrets in logs, this
process keeps one registry of secret *values* — the secret key, repository credentials, host
tokens, webhook secrets, stage credentials, sensitive Terraform outputs — and masks each of them,
in the forms a value commonly takes when copied into text (plain, JSON-escaped, base64; and the
long high-entropy tokens of a multi-line secret such as a private key or a kubeconfig):

* store columns that hold such text redact on write (`store.types.RedactedText`/`RedactedJSON`);
* the composition root wraps the log record factory (`install_log_redaction`);
* what is posted to a Git host is passed through `redact` by the caller.

The registry is per process and only grows; values shorter than `MIN_LENGTH` are not registered
(masking `test` everywhere would destroy text and protect nothing).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

MASK = "(sensitive)"
MIN_LENGTH = 6
TOKEN_LENGTH = 20
_TOKEN_SPLIT = re.compile(r"[\s:\"',=;]+")


class Redactor:
    """A registry of secret values and the masking of them in text and JSON-like values."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._ordered: list[str] = []
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        """Register secret values (every form of each); short or empty values are ignored."""
        new = {form for value in values if value for form in forms_of(value)} - self._forms
        if not new:
            return
        with self._lock:
            self._forms |= new
            self._ordered = sorted(self._forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def value(self, data: Any) -> Any:
        """The same structure with every string (keys included) redacted."""
        if not self._ordered:
            return data
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {self(key) if isinstance(key, str) else key: self.value(item) for key, item in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.value(item) for item in data]
        return data

    def __len__(self) -> int:
        return len(self._forms)


def forms_of(value: str) -> set[str]:
    """The text forms a secret takes when copied: itself, JSON-escaped, base64 (standard and URL
    alphabets, with and without padding), and for multi-line or structured secrets their long
    high-entropy tokens (key material, bearer tokens) on their own."""
    value = value.strip("\n")
    if len(value) < MIN_LENGTH:
        return set()
    found = {value, json.dumps(value)[1:-1]}
    raw = value.encode("utf-8")
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        found |= {text, text.rstrip("=")}
    if "\n" in value or " " in value:
        found |= {token for token in _TOKEN_SPLIT.split(value) if _high_entropy(token)}
    return {form for form in found if len(form) >= MIN_LENGTH}


def _high_entropy(token: str) -> bool:
    if len(token) < TOKEN_LENGTH:
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy >= 4.0 or len(token) >= 40


REDACTOR = Redactor()
"""This process's registry (each worker, server and CLI process builds its own)."""


def remember(*values: str | None) -> None:
    """Register secret values with this process's registry."""
    REDACTOR.add(*values)


def remember_all(values: Iterable[Any]) -> None:
    """Register every string inside nested values (a sensitive Terraform output may be a map)."""
    for value in values:
        if isinstance(value, str):
            REDACTOR.add(value)
        elif isinstance(value, dict):
            remember_all(value.values())
        elif isinstance(value, (list, tuple)):
            remember_all(value)


def redact(text: str) -> str:
    return REDACTOR(text)


def _redacted(record: logging.LogRecord) -> logging.LogRecord:
    if len(REDACTOR):
        message = record.getMessage()
        masked = REDACTOR(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = REDACTOR(logging.Formatter().formatException(record.exc_info))
    return record


def install_log_redaction() -> None:
    """Mask registered secrets in every log record this process makes, whichever handler (Celery's,
    uvicorn's, a file) writes it: the record factory is wrapped once."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "tidegate_redacting", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redacted(factory(*args, **kwargs))

    make.tidegate_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)
