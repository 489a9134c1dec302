"""How far a rebuild is, from the offsets it started with and those written so far."""

from __future__ import annotations

from services.desk.rebuild import Progress, Span, progress


def test_progress_counts_from_each_partitions_first_offset() -> None:
    target = {
        ("alerts", 0): Span(first=0, end=10),
        # Retention removed the first 100 records: the rebuild starts at 100.
        ("audit", 0): Span(first=100, end=150),
        ("audit", 1): Span(first=7, end=7),  # nothing to read
    }
    assert progress(target, {}) == Progress(written=0, remaining=60, unseen=3)
    assert progress(target, {("alerts", 0): 4, ("audit", 0): 120}) == Progress(24, 36, 1)
    done = {("alerts", 0): 10, ("audit", 0): 150}
    assert progress(target, done) == Progress(written=60, remaining=0, unseen=1)
    assert not progress(target, done).complete


def test_an_empty_partition_is_complete_once_it_has_its_row() -> None:
    # The live desk writes a row for a partition it found empty; so must the rebuild.
    target = {("alerts", 0): Span(first=0, end=10), ("audit", 1): Span(first=7, end=7)}
    assert not progress(target, {("alerts", 0): 10}).complete
    assert progress(target, {("alerts", 0): 10, ("audit", 1): 7}).complete


def test_progress_never_counts_past_the_end_it_was_given() -> None:
    # Records that arrived after the rebuild began are written too, and not counted.
    target = {("alerts", 0): Span(first=0, end=10)}
    assert progress(target, {("alerts", 0): 25}) == Progress(written=10, remaining=0)
