"""Durations as people write them in config repos: `30s`, `2m`, `1h30m`, `1d`.

Argo CD and Flux both take Go-style durations; we accept the same spelling (without the
sub-second units nobody uses for polling) and reject bare numbers, whose unit a reader must guess.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_PATTERN = r"^([0-9]+(d|h|m|s))+$"
_PART = re.compile(r"([0-9]+)(d|h|m|s)")


def parse_duration(value: Any) -> timedelta:
    """Read `2m` or `1h30m`; a timedelta passes through (defaults written in code)."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"expected a duration such as 30s, 2m or 1h30m, got {value!r}")
    seconds = sum(int(amount) * _UNITS[unit] for amount, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest spelling that parses back to the same value."""
    seconds = int(value.total_seconds())
    text = ""
    for unit, size in _UNITS.items():
        amount, seconds = divmod(seconds, size)
        if amount:
            text += f"{amount}{unit}"
    return text or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "2m", "1h30m"]}),
]
