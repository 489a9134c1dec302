"""When ingest replaces a kafka-python producer that went silent."""

from __future__ import annotations

import pytest

from services.ingest.producer_health import ProducerHealth, RetirementReason


def test_a_fresh_producer_is_kept() -> None:
    assert ProducerHealth(stale_after=3.0).retire_reason(now=100.0) is None


def test_one_timeout_is_tolerated_two_in_a_row_are_not() -> None:
    health = ProducerHealth(stale_after=3.0)
    health.timed_out(started=8.0, now=10.0)
    assert health.retire_reason(now=0.0) is None
    health.timed_out(started=18.0, now=20.0)
    assert health.retire_reason(now=0.0) is RetirementReason.TIMEOUTS


def test_an_acknowledged_write_resets_the_count() -> None:
    health = ProducerHealth(stale_after=3.0)
    health.timed_out(started=28.0, now=30.0)
    health.acknowledged()
    health.timed_out(started=38.0, now=40.0)
    assert health.consecutive_timeouts == 1
    assert health.retire_reason(now=0.0) is None


def test_the_threshold_is_configurable() -> None:
    health = ProducerHealth(stale_after=3.0, max_consecutive_timeouts=3)
    health.timed_out(started=48.0, now=50.0)
    health.timed_out(started=58.0, now=60.0)
    assert health.retire_reason(now=0.0) is None
    health.timed_out(started=68.0, now=70.0)
    assert health.retire_reason(now=0.0) is RetirementReason.TIMEOUTS


def test_a_send_unsettled_past_the_delivery_timeout_retires_the_producer() -> None:
    health = ProducerHealth(stale_after=3.0)
    health.sent(now=10.0)
    assert health.retire_reason(now=13.0) is None
    assert health.retire_reason(now=13.5) is RetirementReason.STALE_SEND


def test_the_oldest_unsettled_send_counts_not_the_newest() -> None:
    health = ProducerHealth(stale_after=3.0)
    first = health.sent(now=10.0)
    health.sent(now=12.0)
    assert health.oldest_unsettled_age(now=14.0) == 4.0
    health.settled(first)
    assert health.oldest_unsettled_age(now=14.0) == 2.0
    assert health.retire_reason(now=14.0) is None


def test_settled_sends_leave_nothing_behind() -> None:
    health = ProducerHealth(stale_after=3.0)
    tokens = [health.sent(now=float(i)) for i in range(5)]
    for token in reversed(tokens):
        health.settled(token)
    assert health.oldest_unsettled_age(now=100.0) == 0.0
    assert health.retire_reason(now=100.0) is None


def test_settling_twice_or_unknown_tokens_is_harmless() -> None:
    health = ProducerHealth(stale_after=3.0)
    token = health.sent(now=0.0)
    health.settled(token)
    health.settled(token)
    health.settled(12345)
    assert health.oldest_unsettled_age(now=50.0) == 0.0


def test_timeouts_win_over_a_stale_send_as_the_reason() -> None:
    health = ProducerHealth(stale_after=3.0)
    health.sent(now=0.0)
    health.timed_out(started=78.0, now=80.0)
    health.timed_out(started=88.0, now=90.0)
    assert health.retire_reason(now=10.0) is RetirementReason.TIMEOUTS


def test_writes_under_way_together_time_out_as_one() -> None:
    # A request's events and audit records, and concurrent requests, share one stall.
    health = ProducerHealth(stale_after=3.0)
    health.timed_out(started=0.0, now=2.0)
    health.timed_out(started=0.0, now=2.0)
    health.timed_out(started=1.5, now=3.5)
    assert health.consecutive_timeouts == 1
    assert health.retire_reason(now=3.5) is None
    # A write begun after the counted timeout saw a second stall.
    health.timed_out(started=2.5, now=4.5)
    assert health.consecutive_timeouts == 2
    assert health.retire_reason(now=4.5) is RetirementReason.TIMEOUTS


@pytest.mark.parametrize(("stale_after", "timeouts"), [(0.0, 2), (-1.0, 2), (3.0, 0)])
def test_nonsense_limits_are_refused(stale_after: float, timeouts: int) -> None:
    with pytest.raises(ValueError, match="stale_after"):
        ProducerHealth(stale_after=stale_after, max_consecutive_timeouts=timeouts)
