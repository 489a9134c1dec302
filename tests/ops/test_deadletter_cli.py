"""`safeguard deadletter ls|show|replay` on the real broker: filters, what is shown (no
personal data unless asked, and audited), and what a replay writes and audits.

The dead letters are written as the services write them (`DeadLetter.from_record`); a
replay's effect on the services (a repeat changes nothing) is tests/e2e/test_deadletter_repair.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError
from services.cli.main import app
from tests.fixtures.broker import make_topics, produce, read_all

pytestmark = pytest.mark.integration

runner = CliRunner()

CHILD = "C-SECRET-1"
EVENT = json.dumps(
    {
        "specversion": "1.0",
        "id": "dl-ev-1",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": "2026-11-01T09:00:00Z",
        "data": {"incident_id": "INC-9", "category": "neglect", "children": [{"child_id": CHILD}]},
    },
    separators=(",", ":"),
).encode()


@dataclass(frozen=True)
class Topics:
    bootstrap: str
    deadletter: str
    audit: str
    events: str

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(
            app,
            [
                "deadletter",
                *args,
                "--bootstrap",
                self.bootstrap,
                "--topic",
                self.deadletter,
                *(["--audit-topic", self.audit] if args[0] != "ls" else []),
            ],
            env=env,
        )


def letter(
    reason: DeadLetterReason,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    day: int,
) -> bytes:
    record = DeadLetter.from_record(
        reason=reason,
        errors=[FieldError(loc="data.children.0.age", msg="Field required")],
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        failed_at=datetime(2026, 11, day, 10, 0, tzinfo=UTC),
    )
    return record.model_dump_json().encode()


@pytest.fixture
def topics(kafka_bootstrap: str, unique: str) -> Topics:
    found = Topics(
        kafka_bootstrap, f"dl{unique}.deadletter", f"dl{unique}.audit", f"dl{unique}.events"
    )
    make_topics(kafka_bootstrap, [found.deadletter, found.audit], partitions=1)
    make_topics(kafka_bootstrap, [found.events], partitions=2)
    produce(
        kafka_bootstrap,
        found.deadletter,
        [
            # 0:0 an event risk could not validate, from partition 1 of the events topic
            (
                CHILD.encode(),
                letter(
                    DeadLetterReason.INVALID_EVENT,
                    topic=found.events,
                    partition=1,
                    offset=7,
                    key=CHILD.encode(),
                    value=EVENT,
                    day=1,
                ),
            ),
            # 0:1 not JSON at all
            (
                b"C-SECRET-2",
                letter(
                    DeadLetterReason.INVALID_JSON,
                    topic=found.events,
                    partition=0,
                    offset=3,
                    key=b"C-SECRET-2",
                    value=b'{"not json C-SECRET-2',
                    day=2,
                ),
            ),
            # 0:2 from another topic, key and value not UTF-8: its bytes are lost
            (
                b"\xff\xfe",
                letter(
                    DeadLetterReason.PROCESSING_ERROR,
                    topic="safeguarding.alerts.v1",
                    partition=0,
                    offset=1,
                    key=b"\xff\xfe",
                    value=b"\xff{}",
                    day=3,
                ),
            ),
            # 0:3 not a dead letter at all
            (None, b"hello"),
        ],
    )
    return found


def refs(result: Any) -> list[str]:
    assert result.exit_code == 0, result.output
    return [item["ref"] for item in json.loads(result.stdout)]


def test_ls_lists_every_dead_letter_without_personal_data(topics: Topics) -> None:
    listed = topics.cli("ls", "--output", "json")
    assert refs(listed) == ["0:0", "0:1", "0:2", "0:3"]  # by failure time; 0:3 is now
    first = json.loads(listed.stdout)[0]
    assert first["reason"] == "invalid_event"
    assert first["errors"] == ["data.children.0.age: Field required"]
    assert first["original"] == {"topic": topics.events, "partition": 1, "offset": 7}
    assert first["event"]["id"] == "dl-ev-1"
    assert json.loads(listed.stdout)[3]["reason"] == "unreadable"
    table = topics.cli("ls")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split()[:4] == ["REF", "FAILED", "AT", "REASON"]
    for output in (listed.stdout, table.stdout, table.stderr):
        assert "C-SECRET" not in output


def test_ls_filters_by_reason_time_key_and_original_topic(topics: Topics) -> None:
    assert refs(topics.cli("ls", "-o", "json", "--reason", "invalid_json")) == ["0:1"]
    both = topics.cli("ls", "-o", "json", "--reason", "invalid_json", "--reason", "invalid_event")
    assert refs(both) == ["0:0", "0:1"]
    assert refs(topics.cli("ls", "-o", "json", "--key", CHILD)) == ["0:0"]
    window = topics.cli("ls", "-o", "json", "--since", "2026-11-02", "--until", "2026-11-03")
    assert refs(window) == ["0:1"]
    mine = topics.cli("ls", "-o", "json", "--original-topic", topics.events)
    assert refs(mine) == ["0:0", "0:1"]
    assert refs(topics.cli("ls", "-o", "json", "--key", "C-NOBODY")) == []


def test_show_says_why_and_hides_the_key_and_payload(topics: Topics) -> None:
    shown = topics.cli("show", "0:0")
    assert shown.exit_code == 0, shown.output
    assert "invalid_event" in shown.stdout
    assert "data.children.0.age: Field required" in shown.stdout
    assert "incident.reported urn:safeguard:source:control-room dl-ev-1" in shown.stdout
    assert "C-SECRET" not in shown.stdout
    assert "not shown" in shown.stderr
    assert read_all(topics.bootstrap, topics.audit) == []


def test_showing_the_payload_needs_a_name_and_is_audited_first(topics: Topics) -> None:
    refused = topics.cli("show", "0:0", "--show-personal-data")
    assert refused.exit_code == 2
    assert "--by" in refused.output
    shown = topics.cli("show", "0:0", "--show-personal-data", "--by", "ops-anna", "-o", "json")
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    assert body["personal_data"]["key"] == CHILD
    assert body["personal_data"]["value"]["data"]["children"][0]["child_id"] == CHILD
    assert "personal data" in shown.stderr
    (audit,) = read_all(topics.bootstrap, topics.audit)
    assert audit.key == f"{topics.deadletter}:0:0".encode()
    recorded = json.loads(audit.value)
    assert recorded["source"] == "urn:safeguard:cli"
    assert recorded["data"]["action"] == "deadletter.viewed"
    assert recorded["data"]["actor"] == "ops-anna"
    assert recorded["data"]["record"] == {"topic": topics.deadletter, "partition": 0, "offset": 0}
    assert CHILD not in audit.value.decode()


def test_replay_needs_a_selection_and_a_name(topics: Topics) -> None:
    nothing = topics.cli("replay", "--by", "ops-anna")
    assert nothing.exit_code == 2
    assert "--all" in nothing.output
    nameless = topics.cli("replay", "0:0")
    assert nameless.exit_code == 2
    assert "--by" in nameless.output
    unknown = topics.cli("replay", "0:99", "--by", "ops-anna")
    assert unknown.exit_code == 1
    assert "0:99" in unknown.stderr
    dry = topics.cli("replay", "--reason", "invalid_event", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "0:0" in dry.stdout
    assert "nothing sent" in dry.stderr
    assert read_all(topics.bootstrap, topics.events) == []
    assert read_all(topics.bootstrap, topics.audit) == []


def test_replay_writes_the_original_key_and_bytes_back_and_audits_it(topics: Topics) -> None:
    replayed = topics.cli("replay", "0:0", "--by", "ops-anna", "-o", "json")
    assert replayed.exit_code == 0, replayed.output
    (result,) = json.loads(replayed.stdout)
    assert result["problem"] is None
    assert (result["topic"], result["partition"]) == (topics.events, 1)
    (record,) = read_all(topics.bootstrap, topics.events)
    assert (record.partition, record.key, record.value) == (1, CHILD.encode(), EVENT)
    (audit,) = read_all(topics.bootstrap, topics.audit)
    assert json.loads(audit.value)["data"]["action"] == "deadletter.replayed"
    assert json.loads(audit.value)["data"]["record"]["offset"] == 0
    # Again: the same bytes again (the services drop the repeat), audited again.
    again = topics.cli("replay", "--key", CHILD, "--by", "ops-anna")
    assert again.exit_code == 0, again.output
    assert [r.value for r in read_all(topics.bootstrap, topics.events)] == [EVENT, EVENT]
    assert len(read_all(topics.bootstrap, topics.audit)) == 2


def test_what_cannot_be_replayed_byte_for_byte_is_reported_not_sent(topics: Topics) -> None:
    result = topics.cli("replay", "0:2", "0:3", "--by", "ops-anna", "-o", "json")
    assert result.exit_code == 1
    problems = {r["ref"]: r["problem"] for r in json.loads(result.stdout)}
    assert "not UTF-8" in problems["0:2"]
    assert "not a readable dead letter" in problems["0:3"]
    assert read_all(topics.bootstrap, topics.audit) == []
