"""Per-subject caps: no subject's state grows without bound, and none is dropped silently.

Retention (`_prune` in the engine) bounds history by age; a subject that is very busy
inside the retention window (an offender visited daily, a child reported in hundreds of
incidents) could still grow past what one table record may hold. The oldest entries of
such a collection are dropped, the caller counts and logs what was dropped. Obligations
are never dropped here: they are what the service exists to watch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.risk.state import SubjectState

K = TypeVar("K")
V = TypeVar("V")

# Generous for real subjects; each bound keeps one record well under Kafka's 1 MB default.
DEFAULT_CAPS = {
    "seen": 5_000,
    "facts": 200,  # per fulfilling key
    "recent": 50,
    "incidents": 500,
    "episodes": 500,
    "concerns": 500,
    "detentions": 500,
    "patterns": 200,
    "levels": 100,
    "visits": 500,
    "referrals": 500,
    "transfers": 500,
    "refused": 50,
}
EARLIEST = datetime.min.replace(tzinfo=UTC)
# Under the producer's default max.request.size (1 MiB), with room for the changelog
# record's headers and key.
MAX_RECORD_BYTES = 900_000


@dataclass(frozen=True)
class Capped:
    """What capping dropped, by collection."""

    dropped: dict[str, int]


def _keep_newest_dict(
    values: dict[K, V], limit: int, at: Callable[[tuple[K, V]], Any]
) -> tuple[dict[K, V], int]:
    if len(values) <= limit:
        return values, 0
    ordered = sorted(values.items(), key=at)
    return dict(ordered[-limit:]), len(values) - limit


def cap(state: SubjectState, caps: dict[str, int] | None = None) -> Capped:
    """Drop the oldest entries of every collection over its cap (in place)."""
    limits = caps or DEFAULT_CAPS
    dropped: dict[str, int] = {}

    def note(name: str, count: int) -> None:
        if count:
            dropped[name] = dropped.get(name, 0) + count

    state.seen, n = _keep_newest_dict(state.seen, limits["seen"], lambda kv: kv[1])
    note("seen", n)
    for match, facts in list(state.facts.items()):
        if len(facts) > limits["facts"]:
            facts.sort(key=lambda f: f.at)
            note("facts", len(facts) - limits["facts"])
            state.facts[match] = facts[-limits["facts"] :]
    for name in ("incidents", "episodes", "concerns"):
        kept, n = _keep_newest_dict(getattr(state, name), limits[name], lambda kv: kv[1].at)
        setattr(state, name, kept)
        note(name, n)
    state.detentions, n = _keep_newest_dict(
        state.detentions, limits["detentions"], lambda kv: kv[1]
    )
    note("detentions", n)
    state.referrals, n = _keep_newest_dict(
        state.referrals,
        limits["referrals"],
        lambda kv: kv[1].parts[-1].at if kv[1].parts else EARLIEST,
    )
    note("referrals", n)
    state.transfers, n = _keep_newest_dict(
        state.transfers,
        limits["transfers"],
        lambda kv: kv[1].requested_at or kv[1].refused_at or EARLIEST,
    )
    note("transfers", n)
    for name in ("recent", "patterns", "levels", "visits", "refused"):
        items = getattr(state, name)
        if len(items) > limits[name]:
            items.sort(key=lambda item: item.at)
            note(name, len(items) - limits[name])
            setattr(state, name, items[-limits[name] :])
    return Capped(dropped)


def fit(state: SubjectState, max_bytes: int = MAX_RECORD_BYTES) -> tuple[bytes, Capped]:
    """Return the state's table value, capped until it fits in one record."""
    capped = cap(state)
    raw = state.to_json()
    limits = dict(DEFAULT_CAPS)
    while len(raw) > max_bytes and any(v > 1 for v in limits.values()):
        limits = {k: max(1, v // 2) for k, v in limits.items()}
        more = cap(state, limits)
        for name, count in more.dropped.items():
            capped.dropped[name] = capped.dropped.get(name, 0) + count
        raw = state.to_json()
    return raw, capped
