"""Durations as operators write them in policy files: `90s`, `15m`, `4h`, `14d`, `1d12h`."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+)([dhms])")
_WHOLE = re.compile(r"^(\d+[dhms])+$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: object) -> timedelta:
    """Parse `1d12h`-style text; timedeltas pass through unchanged."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        # A ValueError, not a TypeError: pydantic reports only the former as invalid input.
        raise ValueError(f"expected a duration such as 90s, 15m, 4h, 14d or 1d12h, got {text!r}")  # noqa: TRY004
    return _parse(text)


# Every alert's record holds its ladder's durations: the same few strings, decoded at
# every step of every alert.
@functools.lru_cache(maxsize=256)
def _parse(text: str) -> timedelta:
    if not _WHOLE.match(text.strip()):
        raise ValueError(f"expected a duration such as 90s, 15m, 4h, 14d or 1d12h, got {text!r}")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


@functools.lru_cache(maxsize=256)
def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the same style, largest units first."""
    remaining = int(delta.total_seconds())
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
