"""Request bodies of the notify and risk pages: only 4xx for anything a client can send."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, StringConstraints

from services.common.bodies import BodyRefused, parse_body

MARKER = "Jane Doe 2011-04-01"


class Action(BaseModel):
    """The shape of notify's ack/resolve body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")] | None = None
    note: str | None = None


def refused(raw: bytes) -> BodyRefused:
    with pytest.raises(BodyRefused) as caught:
        parse_body(raw, Action, max_bytes=16 * 1024)
    return caught.value


def test_a_valid_body_and_an_empty_one() -> None:
    assert parse_body(b'{"by": "A. Duty"}', Action, max_bytes=100).by == "A. Duty"
    assert parse_body(b"  ", Action, max_bytes=100) == Action()
    with pytest.raises(BodyRefused):
        parse_body(b"", Action, max_bytes=100, empty_ok=False)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"by": 1' + b"0" * 5000 + b"}", 400),  # json.loads raises ValueError here
        (b"[" * 100_000, 413),
        (b"[" * 10_000, 400),  # nesting: json.loads raises RecursionError
        (b'{"note":' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (b"\xff\xfe", 400),
        (b'{"by": "a\\u0000b"}', 422),
        (b'{"by": 12}', 422),
        (b"[]", 422),
        (b"null", 422),
    ],
)
def test_hostile_bodies_are_4xx(raw: bytes, status: int) -> None:
    assert refused(raw).status == status


def test_unknown_fields_are_named_by_position_and_values_never_quoted() -> None:
    problem = refused(json.dumps({MARKER: 1, "by": f"{MARKER}\n"}).encode())
    assert problem.status == 422
    assert MARKER not in json.dumps(problem.body())
    assert {e["loc"] for e in problem.errors} == {"<unknown field #1>", "by"}


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_give_a_model_or_a_4xx(raw: bytes) -> None:
    status = 200
    try:
        parse_body(raw, Action, max_bytes=100)
    except BodyRefused as exc:
        status = exc.status
    assert status == 200 or 400 <= status < 500
