"""A direct producer end to end: risk reads its topic with its scopes, as real processes.

The producer's topic has a partition count of its own (3, risk's is 4), so its records
take the `route` hop: checked there, forwarded to their subjects' home partitions and
applied. What its scopes allow raises its alerts and leaves `event.accepted` naming the
producer; what they do not (another source, an area outside) is dead-lettered
`forbidden` with a `request.refused` record, and raises nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.broker import create_topics
from devtools.stack import DevStack
from services.risk.producers import producer_topic
from tests.fixtures.broker import produce, read_all
from tests.fixtures.stack import StackFactory, wait_until

pytestmark = pytest.mark.e2e

NAME = "police-rms"
RMS = "urn:police:rms"
PRODUCER_PARTITIONS = 3


@pytest.fixture(scope="module")
def producer_stack(
    stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> DevStack:
    folder = tmp_path_factory.mktemp("producers")
    path = folder / "producers.yaml"
    path.write_text(
        yaml.safe_dump({"producers": [{"name": NAME, "sources": [RMS], "areas": ["north"]}]})
    )
    stack = stack_factory(desks=0, start=False, extra_env={"RISK_DIRECT_PRODUCERS_FILE": str(path)})
    create_topics(stack.bootstrap, [topic(stack)], partitions=PRODUCER_PARTITIONS)
    return stack.start()


def topic(stack: DevStack) -> str:
    return producer_topic(stack.topics.events, NAME)


def incident(child_id: str, *, source: str = RMS, area: str = "north") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"dp-{uuid.uuid4().hex[:10]}",
        "source": source,
        "type": "incident.reported",
        "time": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": f"INC-{uuid.uuid4().hex[:6]}",
            "category": "domestic_abuse",
            "area": area,
            "children": [{"child_id": child_id, "present": True, "age": 9}],
        },
    }


def records(stack: DevStack, name: str, where: Callable[[dict[str, Any]], bool]) -> list[Any]:
    return [v for r in read_all(stack.bootstrap, name) if where(v := json.loads(r.value))]


def test_a_producer_is_held_to_its_scopes(producer_stack: DevStack) -> None:
    stack = producer_stack
    tag = uuid.uuid4().hex[:6]
    allowed = incident(f"C-DP-{tag}-ok")
    elsewhere = incident(f"C-DP-{tag}-src", source="urn:elsewhere")
    south = incident(f"C-DP-{tag}-area", area="south")
    sent = [allowed, elsewhere, south]
    produce(
        stack.bootstrap,
        topic(stack),
        [(e["data"]["children"][0]["child_id"].encode(), json.dumps(e).encode()) for e in sent],
    )

    def alerts_of(event: dict[str, Any]) -> list[Any]:
        child = event["data"]["children"][0]["child_id"]
        return records(
            stack,
            stack.topics.alerts,
            lambda a: a["type"] == "alert.raised" and a["data"].get("child_id") == child,
        )

    def forbidden() -> list[Any]:
        return records(
            stack,
            stack.topics.deadletter,
            lambda d: d["topic"] == topic(stack) and d["reason"] == "forbidden",
        )

    assert wait_until(lambda: alerts_of(allowed), timeout=60), "the allowed event raised nothing"

    def both_refused() -> list[Any]:
        found = forbidden()
        return found if len(found) == len(sent) - 1 else []

    letters = wait_until(both_refused, timeout=30)
    assert letters, forbidden()
    assert sorted(e["loc"] for d in letters for e in d["errors"]) == ["data.area", "source"]
    assert all("urn:elsewhere" not in json.dumps(d["errors"]) for d in letters)

    audit = records(stack, stack.audit_topic, lambda a: a["data"]["actor"] == NAME)
    accepted = [a["data"] for a in audit if a["data"]["action"] == "event.accepted"]
    assert [a["event"] for a in accepted] == [{"source": RMS, "id": allowed["id"]}]
    assert all(a["source"] == "urn:safeguard:risk" for a in audit)
    refused = [a["data"]["refusal"] for a in audit if a["data"]["action"] == "request.refused"]
    assert refused == [{"status": 403, "route": topic(stack)}] * 2

    # The allowed event's alerts are out, so were the refused ones' (one batch path): none.
    assert alerts_of(elsewhere) == []
    assert alerts_of(south) == []
    views = {r.key for r in read_all(stack.bootstrap, stack.topics.child_views)}
    assert views.isdisjoint({f"C-DP-{tag}-src".encode(), f"C-DP-{tag}-area".encode()})


def test_a_file_risk_cannot_accept_stops_it_plainly(
    tmp_path: Path, producer_stack: DevStack
) -> None:
    path = tmp_path / "producers.yaml"
    path.write_text(
        yaml.safe_dump(
            {"producers": [{"name": NAME, "sources": [RMS]}, {"name": NAME, "sources": ["b"]}]}
        )
    )
    spec = next(s for s in producer_stack.specs if s.name == "risk")
    env = producer_stack.environment(spec) | {"RISK_DIRECT_PRODUCERS_FILE": str(path)}
    done = subprocess.run(  # noqa: S603 - our own entry point
        [sys.executable, "-m", spec.entry], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert f"'{NAME}' is listed twice" in done.stderr.decode()
