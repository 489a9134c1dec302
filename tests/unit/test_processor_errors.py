"""The keyed-state processor's error policy, with its collaborators replaced.

What can never succeed is dead-lettered with its reason; what fails for a passing reason
(a publish, a dead-letter send) is retried while the message is held, and the service
reports itself degraded until it succeeds. The real-broker versions of these faults are
in tests/integration/test_stream_faults.py and test_network_faults.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from prometheus_client import CollectorRegistry

from schemas.deadletter import DeadLetterReason
from schemas.errors import FieldError, InvalidEvent
from services.common.clock import SystemClock
from services.common.processor import KeyedStateProcessor, ProcessorMetrics, RetryPolicy


@dataclass
class Message:
    topic: str = "in"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"k"
    value: bytes | None = b"{}"


class DeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[DeadLetterReason, list[FieldError]]] = []

    async def send(self, _message: Any, reason: DeadLetterReason, errors: list[FieldError]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append((reason, errors))


@pytest.fixture
def processor() -> KeyedStateProcessor[Any]:
    app = faust.App(f"t-{id(object())}", broker="kafka://127.0.0.1:1", store="memory://")
    registry = CollectorRegistry()
    proc: KeyedStateProcessor[Any] = KeyedStateProcessor(
        app,
        inputs=["in"],
        table="t",
        partitions=1,
        logic=None,  # type: ignore[arg-type] - hold() takes its decisions as arguments
        dead_letters_topic="dl",
        clock=SystemClock(),
        metrics=ProcessorMetrics(registry, "safeguard_test"),
        check_interval_seconds=1,
        retry=RetryPolicy(first_delay_seconds=0.001, max_delay_seconds=0.002),
    )
    proc.dead_letters = DeadLetters()  # type: ignore[assignment]
    proc.recovered = True
    return proc


def failures(proc: KeyedStateProcessor[Any], stage: str) -> float:
    return proc.metrics.transient_failures.labels(stage=stage)._value.get()  # noqa: SLF001


def test_a_failing_publish_is_retried_until_it_succeeds_and_nothing_is_dead_lettered(
    processor: KeyedStateProcessor[Any],
) -> None:
    decided: list[int] = []
    committed: list[int] = []
    readiness: list[bool] = []

    def decide() -> int:
        decided.append(1)
        return len(decided)

    async def commit(decision: int) -> None:
        readiness.append(processor.ready())
        if decision < 4:
            raise TimeoutError("publish timed out")
        committed.append(decision)

    asyncio.run(processor.hold(Message(), decide, commit))  # type: ignore[arg-type]
    assert committed == [4]  # decided afresh each time, committed once
    assert failures(processor, "publish") == 3
    assert processor.dead_letters.sent == []  # type: ignore[attr-defined]
    assert readiness == [True, False, False, False]  # not ready while retrying
    assert processor.ready()


def test_invalid_input_is_dead_lettered_with_its_reason_and_not_retried(
    processor: KeyedStateProcessor[Any],
) -> None:
    errors = [FieldError(loc="data.x", msg="required")]

    def decide() -> None:
        raise InvalidEvent(errors)

    async def commit(_: None) -> None:
        raise AssertionError("nothing to commit for invalid input")

    asyncio.run(processor.hold(Message(), decide, commit))  # type: ignore[arg-type]
    assert processor.dead_letters.sent == [(DeadLetterReason.INVALID_EVENT, errors)]  # type: ignore[attr-defined]


def test_a_rule_that_raises_dead_letters_the_input_with_the_error_type_only(
    processor: KeyedStateProcessor[Any],
) -> None:
    def decide() -> None:
        raise KeyError("C-1 Jane Doe")  # a message that may carry personal data

    async def commit(_: None) -> None:
        raise AssertionError("unreachable")

    asyncio.run(processor.hold(Message(), decide, commit))  # type: ignore[arg-type]
    ((reason, errors),) = processor.dead_letters.sent  # type: ignore[attr-defined]
    assert reason is DeadLetterReason.PROCESSING_ERROR
    assert [e.msg for e in errors] == ["KeyError"]


def test_a_failing_dead_letter_send_is_retried_not_skipped(
    processor: KeyedStateProcessor[Any],
) -> None:
    processor.dead_letters = DeadLetters(failures=2)  # type: ignore[assignment]

    def decide() -> None:
        raise InvalidEvent([FieldError(loc="id", msg="bad")])

    async def commit(_: None) -> None:
        raise AssertionError("unreachable")

    asyncio.run(processor.hold(Message(), decide, commit))  # type: ignore[arg-type]
    assert len(processor.dead_letters.sent) == 1  # type: ignore[attr-defined]
    assert failures(processor, "deadletter") == 2
    assert processor.ready()
