"""Merging the alert list's pages from several workers (services/notify/peers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.notify.index import decode_cursor
from services.notify.peers import merge

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def page(ids: list[int], partitions: list[int], *, more: bool = False) -> dict[str, Any]:
    alerts = [
        {"alert_id": f"al-{n:02d}", "raised_at": (T0 + timedelta(minutes=n)).isoformat()}
        for n in sorted(ids, reverse=True)
    ]
    return {"alerts": alerts, "next_cursor": "x" if more else None, "partitions": partitions}


def test_pages_merge_newest_first_and_continue_after_the_last_kept() -> None:
    merged = merge(page([9, 5, 1], [0, 1]), [page([8, 7, 2], [2, 3])], limit=4, unanswered=[])
    assert [a["alert_id"] for a in merged.alerts] == ["al-09", "al-08", "al-07", "al-05"]
    assert merged.partitions == {0, 1, 2, 3}
    assert merged.next_cursor is not None
    assert decode_cursor(merged.next_cursor) == (-(T0 + timedelta(minutes=5)).timestamp(), "al-05")


def test_the_last_page_has_no_cursor_unless_a_worker_has_more() -> None:
    assert merge(page([3], [0]), [page([2], [1])], limit=5, unanswered=[]).next_cursor is None
    later = merge(page([3], [0]), [page([2], [1], more=True)], limit=5, unanswered=[])
    assert later.next_cursor is not None


def test_a_worker_that_did_not_answer_is_named() -> None:
    merged = merge(page([1], [0]), [], limit=5, unanswered=["http://127.0.0.2:8082"])
    assert merged.unanswered == ["http://127.0.0.2:8082"]
    assert merged.partitions == {0}
