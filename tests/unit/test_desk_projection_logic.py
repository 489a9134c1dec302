"""The desk projector's pure parts: decoding records, reducing a batch, merging obligations."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.desk.merge import ObligationFacts, from_closure, merge, reason_code
from services.desk.records import AlertRow, Batch, Kind, Skipped, decode
from tests.fixtures.views import (
    T0,
    alert_view,
    alert_view_record,
    audit_record,
    child_view_record,
    closed_record,
    outcome_record,
    sent_record,
)

H = timedelta(hours=1)


def test_an_alert_view_becomes_its_row_and_its_closure() -> None:
    view = alert_view("al-1", status="resolved", closed=(T0 + H, "duplicate"), acknowledged_by="x")
    changes = decode(Kind.ALERT_VIEWS, alert_view_record(view)[1])
    assert not isinstance(changes, Skipped)
    row, closure = changes
    assert isinstance(row, AlertRow)
    assert row.values["status"] == "resolved"
    assert row.values["acknowledged_by"] == "x"
    assert row.values["severity_rank"] == 1
    assert row.values["overdue_since"] == view.alert.due_at
    assert row.values["view"]["alert"]["alert_id"] == "al-1"
    assert closure == from_closure("al-1", T0 + H, "duplicate")


def test_a_pattern_alert_is_overdue_since_its_raise() -> None:
    changes = decode(Kind.ALERT_VIEWS, alert_view_record(alert_view("al-p", due_at=None))[1])
    assert not isinstance(changes, Skipped)
    assert changes[0].values["overdue_since"] == T0  # type: ignore[union-attr]


def test_every_kind_of_record_decodes() -> None:
    assert len(decode(Kind.CHILD_VIEWS, child_view_record("C-1")[1])) == 1  # type: ignore[arg-type]
    [outcome] = decode(Kind.OUTCOMES, outcome_record("al-1", "breached", due_at=T0)[1])  # type: ignore[misc]
    assert isinstance(outcome, ObligationFacts)
    assert outcome.breached
    event, closure = decode(Kind.NOTIFICATIONS, closed_record("al-1", T0, "other")[1])  # type: ignore[misc]
    assert event.values["type"] == "alert.closed"  # type: ignore[union-attr]
    assert isinstance(closure, ObligationFacts)
    assert closure.close_reason == "other"
    assert len(decode(Kind.NOTIFICATIONS, sent_record("al-1")[1])) == 1  # type: ignore[arg-type]
    [audit] = decode(Kind.AUDIT, audit_record(child_id="C-1")[1])  # type: ignore[misc]
    assert audit.values["child_id"] == "C-1"  # type: ignore[union-attr]


def test_what_cannot_be_projected_is_skipped_with_a_reason() -> None:
    for kind in Kind:
        assert decode(kind, None) == Skipped("tombstone")
        assert decode(kind, b"not json") == Skipped("invalid_json")
        assert decode(kind, b'{"specversion": "1.0"}') == Skipped("invalid_record")
    # A valid record of another topic is not valid here.
    assert decode(Kind.ALERT_VIEWS, child_view_record("C-1")[1]) == Skipped("invalid_record")


def test_a_batch_keeps_the_newest_view_and_the_first_event() -> None:
    batch = Batch()
    for revision in (2, 5, 3):
        view = alert_view("al-1", revision=revision, level=revision)
        for change in decode(Kind.ALERT_VIEWS, alert_view_record(view)[1]):  # type: ignore[union-attr]
            batch.add(change)
    assert batch.alerts["al-1"].revision == 5
    record = sent_record("al-1")[1]
    for _ in range(3):
        for change in decode(Kind.NOTIFICATIONS, record):  # type: ignore[union-attr]
            batch.add(change)
    assert len(batch.events) == 1
    assert len(batch) == 2


def test_reason_codes_are_bounded() -> None:
    assert reason_code(None) == "unspecified"
    assert reason_code("duplicate") == "duplicate"
    assert reason_code("Jane Doe moved away") == "other"


def facts_strategy(rule: str = "r", hours: int = 6) -> st.SearchStrategy[ObligationFacts]:
    """One obligation's facts in any order: outcomes at hours 0..`hours`, and closures."""
    times = st.integers(min_value=0, max_value=hours).map(lambda h: T0 + h * H)
    outcome = st.builds(
        lambda at, due, fulfilled, breached, area, late, transfers, subject: ObligationFacts(
            "o-1",
            rule=rule,
            area=area,
            severity="high",
            triggered_at=due - H,
            due_at=due,
            fulfilled_at=fulfilled,
            breached=breached,
            described_at=at,
            subject_kind="child",
            subject_id=subject,
            recorded_late_by_seconds=late if fulfilled is not None else None,
            transfer_requested_at=transfers[0],
            transfer_refused_at=transfers[1],
        ),
        times,
        times,
        st.none() | times,
        st.booleans(),
        st.sampled_from(["north", "south", None]),
        st.none() | st.sampled_from([60.0, 7200.0]),
        st.tuples(st.none() | times, st.none() | times),
        st.sampled_from(["C-1", "C-2"]),
    )
    closure = st.builds(
        lambda at, reason: from_closure("o-1", at, reason),
        times,
        st.sampled_from([None, "duplicate", "other", "decided_not_to_act"]),
    )
    return outcome | closure


@given(st.lists(facts_strategy(), min_size=1, max_size=6))
def test_the_merge_is_a_join_whatever_the_order_and_repeats(records: list[ObligationFacts]) -> None:
    def fold(items: list[ObligationFacts]) -> ObligationFacts:
        state = ObligationFacts("o-1")
        for item in items:
            state = merge(state, item)
        return state

    expected = fold(records)
    for order in itertools.islice(itertools.permutations(records), 24):
        assert fold(list(order)) == expected
    assert fold(records + records[:2]) == expected
    # Merged in two halves, then together (a batch pre-merged, then the stored row).
    half = len(records) // 2
    assert merge(fold(records[:half]), fold(records[half:])) == expected
