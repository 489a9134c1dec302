"""Policy durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("14d", timedelta(days=14)),
        ("1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_parse_and_format_round_trip(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "4", "h4", "4 h", "-4h", "4w", 4])
def test_malformed_durations_name_the_expected_form(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as"):
        parse_duration(text)
