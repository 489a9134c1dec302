"""Logged exceptions carry their type and location only: never the message, never locals."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from services.common.logging import configure_logging, exception_location

MARKER = "Jane Doe 2011-04-01"


def fail_with_marker() -> None:
    try:
        int(MARKER)
    except ValueError as exc:
        # Chained on purpose: the cause's message must not leak either.
        raise KeyError(MARKER) from exc


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the process's logging set-up back after a test configured it as a service."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_processor_replaces_exc_info_with_type_and_frames() -> None:
    try:
        fail_with_marker()
    except KeyError as exc:
        event = exception_location(None, "error", {"event": "failed", "exc_info": exc})
    assert "exc_info" not in event
    assert event["exc_type"] == "KeyError"
    assert event["exc_frames"][-1].startswith("tests/unit/test_logging.py:")
    assert event["exc_frames"][-1].endswith("in fail_with_marker")
    assert event["exc_chain"] == [{"type": "ValueError", "frames": event["exc_chain"][0]["frames"]}]
    assert MARKER not in json.dumps(event)


def test_processor_leaves_events_without_exceptions_alone() -> None:
    event = {"event": "ok", "exc_info": False}
    assert exception_location(None, "info", dict(event)) == {"event": "ok"}


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("as_json", [True, False])
def test_structlog_and_library_exceptions_render_without_messages(
    capsys: pytest.CaptureFixture[str], *, as_json: bool
) -> None:
    configure_logging(json=as_json)
    try:
        fail_with_marker()
    except KeyError:
        structlog.get_logger("test").exception("request_failed")
        logging.getLogger("some.library").exception("library_failed")
    output = capsys.readouterr().err
    assert "request_failed" in output
    assert "library_failed" in output
    assert "KeyError" in output
    assert "test_logging.py:" in output
    assert MARKER not in output
    assert "Traceback" not in output
