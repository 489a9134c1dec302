"""structlog set-up, called once at each entry point.

Library loggers (faust, aiokafka, kafka-python, aiohttp) are routed through the same
renderer so that one process writes one format.

Logged exceptions carry their type and where they were raised, never their message or
a rendered traceback: messages quote input (pydantic, json, smtplib, a library's
`repr` of a record), and input is personal data. `exception_location` replaces every
`exc_info` with `exc_type` and `exc_frames` (`file:line in function`) before anything
renders it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import PurePath
from types import TracebackType
from typing import Any

import structlog

# Library loggers held at INFO or above whatever the service's level (see below).
LIBRARIES_NEVER_DEBUG = ("faust", "mode", "aiohttp", "aiosmtplib", "asyncio", "urllib3")
# Frames kept per exception, innermost last: where it was raised and what called it.
MAX_FRAMES = 12
# Causes and contexts followed; each is named by type and frame only, like the first.
MAX_CHAINED = 3

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: object) -> ExcInfo | None:
    if value is True:
        current = sys.exc_info()
        return current if current[0] is not None else None
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):  # noqa: PLR2004
        return value[0], value[1], value[2]
    return None


def _short(filename: str) -> str:
    # The last three parts name the module (`services/ingest/http.py`,
    # `aiokafka/producer/producer.py`) without the machine's directories.
    return "/".join(PurePath(filename).parts[-3:])


def _frames(traceback: TracebackType | None) -> list[str]:
    frames: list[str] = []
    while traceback is not None:
        code = traceback.tb_frame.f_code
        frames.append(f"{_short(code.co_filename)}:{traceback.tb_lineno} in {code.co_name}")
        traceback = traceback.tb_next
    return frames[-MAX_FRAMES:]


def _type_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def exception_location(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Replace `exc_info` with the exception's type and frames; drop its message.

    A structlog processor: runs for structlog's own events and (as a foreign pre-chain
    processor) for standard-library records, before any renderer sees the exception.
    """
    info = _exc_info(event_dict.pop("exc_info", None))
    if info is None:
        return event_dict
    kind, error, traceback = info
    event_dict["exc_type"] = _type_name(kind)
    event_dict["exc_frames"] = _frames(traceback)
    chained: list[dict[str, Any]] = []
    seen = {id(error)}
    link = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    while link is not None and id(link) not in seen and len(chained) < MAX_CHAINED:
        seen.add(id(link))
        chained.append({"type": _type_name(type(link)), "frames": _frames(link.__traceback__)})
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    if chained:
        event_dict["exc_chain"] = chained
    return event_dict


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    """Configure structlog and the standard library root logger."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        exception_location,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        # exception_location has already replaced tracebacks; plain (not rich) in case
        # one ever gets through, since rich's would print local variables.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # The level is checked before anything else: a call below it costs a method call,
        # not a pass through every processor (7.5 microseconds, on the hot path).
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at INFO; the services report broker state
    # themselves through /readyz and metrics.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Libraries' debug logs print whole records (faust.topics logs every value it sends),
    # and records hold personal data: a service's DEBUG is its own code's only.
    for name in LIBRARIES_NEVER_DEBUG:
        library = logging.getLogger(name)
        library.setLevel(max(library.getEffectiveLevel(), logging.INFO))
