"""With two notify workers, `GET /v1/alerts` on either lists every alert, in pages.

Each worker indexes only the partitions it owns; the list asks the other worker for its
page and merges (services/notify/peers.py). Two workers as real processes on the
session broker.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import free_port
from devtools.stack import DevStack, ServiceSpec
from services.common.processes import spawn, stop
from tests.fixtures.broker import produce
from tests.fixtures.events import envelope
from tests.fixtures.stack import Client, wait_until

pytestmark = pytest.mark.e2e

ALERTS = 12


def incidents(tag: str) -> list[tuple[bytes, bytes]]:
    at = datetime.now(UTC) - timedelta(days=3)
    records = []
    for n in range(ALERTS):
        child = f"C-LW-{tag}-{n}"
        event = envelope(
            "incident.reported",
            {
                "incident_id": f"INC-LW-{tag}-{n}",
                "category": "neglect",
                "area": "north",
                "children": [{"child_id": child, "present": False}],
            },
            at,
            event_id=f"lw-{tag}-{n}",
        )
        records.append((child.encode(), json.dumps(event).encode()))
    return records


@pytest.fixture
def second_worker(stack: DevStack, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = stack.environment(ServiceSpec("notify", "NOTIFY_", port))
    env["NOTIFY_STREAM__DATA_DIR"] = str(tmp_path)
    with (tmp_path / "second.log").open("wb") as log:
        worker = spawn([stack.python, "-m", "services.notify.main"], env=env, stdout=log)
        try:
            yield f"http://{stack.host}:{port}"
        finally:
            stop(worker)


def listing(url: str, query: dict[str, str]) -> dict[str, Any] | None:
    try:
        code, body, _ = Client().request("GET", f"{url}/v1/alerts?{urllib.parse.urlencode(query)}")
    except OSError:  # the second worker is still starting
        return None
    return body if code == 200 else None


def ours(body: dict[str, Any], tag: str) -> set[str]:
    return {a["alert_id"] for a in body["alerts"] if a["subject_id"].startswith(f"C-LW-{tag}-")}


def test_either_worker_lists_every_alert_in_pages(stack: DevStack, second_worker: str) -> None:
    tag = uuid.uuid4().hex[:6]
    produce(stack.bootstrap, stack.topics.events, incidents(tag))
    urls = [stack.url("notify"), second_worker]
    query = {"rule": "social-care-referral", "limit": "500"}

    def split() -> list[dict[str, Any]] | None:
        # Both workers own partitions, and between them they hold every alert.
        pages = [listing(url, {**query, "local": "1"}) for url in urls]
        if not all(pages) or not all(p["partitions"] for p in pages if p):
            return None
        held = [ours(p, tag) for p in pages if p]
        return pages if len(held[0] | held[1]) == ALERTS else None

    local = wait_until(split, timeout=120)
    assert local, "the two workers never shared the alerts between them"
    held = [ours(p, tag) for p in local]
    assert held[0], "the first worker held no alert: nothing to merge"
    assert held[1], "the second worker held no alert: nothing to merge"
    assert not held[0] & held[1]

    for url in urls:
        code, merged, _ = Client().request(
            "GET", f"{url}/v1/alerts?{urllib.parse.urlencode(query)}"
        )
        assert code == 200, (url, code, merged)
        assert ours(merged, tag) == held[0] | held[1], url
        assert merged["complete"] is True
        assert sorted(merged["partitions"]) == sorted(
            local[0]["partitions"] + local[1]["partitions"]
        )

    # Small pages across both workers: every alert exactly once, newest first.
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = listing(urls[0], {**query, "limit": "5", **({"cursor": cursor} if cursor else {})})
        assert page is not None
        seen.extend(page["alerts"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [a for a in seen if a["subject_id"].startswith(f"C-LW-{tag}-")]
    assert len(mine) == len({a["alert_id"] for a in mine}) == ALERTS
    order = [(-datetime.fromisoformat(a["raised_at"]).timestamp(), a["alert_id"]) for a in seen]
    assert order == sorted(order)
