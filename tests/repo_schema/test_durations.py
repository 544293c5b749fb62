"""Durations are written as people write them and refused when a reader would have to guess."""

from __future__ import annotations

from datetime import timedelta

import pytest

from repo_schema.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("1d", 86400)],
    ids=["seconds", "minutes", "hours", "combined", "days"],
)
def test_durations_parse_and_format_back(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("text", ["5", "2 minutes", "1.5h", "-2m", "0s", ""], ids=str)
def test_ambiguous_or_empty_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
