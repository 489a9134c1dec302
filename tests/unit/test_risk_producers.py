"""Direct producers: their file, their topics, their scopes, and risk reading their topics.

The scope check is pure; the rest runs the real `RiskLogic` on the stream driver in
memory (tests/fixtures/pipeline.py) on a fake clock. The same through real processes
and a real broker is tests/e2e/test_direct_producers.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from schemas.audit import AuditEvent
from schemas.deadletter import DeadLetter, DeadLetterReason
from services.common.audit import AUDIT_TOPIC
from services.common.clock import FakeClock
from services.common.stream.driver import View
from services.common.stream.inputs import Forbidden, Input
from services.risk.logic import RiskLogic, RiskTopics
from services.risk.metrics import RiskMetrics
from services.risk.producers import (
    DirectProducer,
    ProducerConfigError,
    ProducerEntry,
    accepted_record,
    load_producers,
    out_of_scope,
    producer_topic,
    producers_from,
)
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState
from tests.fixtures.events import T0, envelope, event
from tests.fixtures.pipeline import TOPICS, Pipeline

EVENTS = "safeguarding.events.v1"
RMS = "urn:police:rms"
D = timedelta(days=1)


def producer(
    name: str = "police-rms",
    *,
    sources: tuple[str, ...] = (RMS,),
    types: frozenset[str] | None = None,
    areas: frozenset[str] | None = None,
) -> DirectProducer:
    entry = ProducerEntry.model_validate(
        {"name": name, "sources": sources, "types": types, "areas": areas}
    )
    return producers_from([entry], EVENTS, development=False)[0]


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "producers.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


# -- topics ------------------------------------------------------------------------------


def test_a_producers_topic_is_the_events_topic_with_its_name_before_the_version() -> None:
    assert producer_topic(EVENTS, "police-rms") == "safeguarding.events.police-rms.v1"
    assert (
        producer_topic("p123." + EVENTS, "police-rms") == "p123.safeguarding.events.police-rms.v1"
    )
    with pytest.raises(ProducerConfigError):
        producer_topic("events", "police-rms")


# -- the file ----------------------------------------------------------------------------


def test_the_file_gives_each_producer_its_topic_and_scopes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "producers": [
                {"name": "police-rms", "sources": [RMS], "types": ["child.missing"]},
                {"name": "mash-2", "sources": ["urn:mash"], "areas": ["north"]},
            ]
        },
    )
    rms, mash = load_producers(path, "p1." + EVENTS, development=False)
    assert (rms.name, rms.topic) == ("police-rms", "p1.safeguarding.events.police-rms.v1")
    assert rms.principal.name == "police-rms"
    assert rms.principal.types == frozenset({"child.missing"})
    assert rms.principal.areas is None
    assert mash.principal.types is None
    assert mash.principal.areas == frozenset({"north"})
    assert load_producers(write(tmp_path, "producers: []\n"), EVENTS, development=False) == []


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("producers: [unclosed", "is not YAML"),
        ({"producers": [{"name": "Police_RMS", "sources": [RMS]}]}, "producers.0.name"),
        ({"producers": [{"name": "x" * 41, "sources": [RMS]}]}, "producers.0.name"),
        ({"producers": [{"name": "rms"}]}, "producers.0.sources"),
        ({"producers": [{"name": "rms", "sources": []}]}, "producers.0.sources"),
        ({"producers": [{"name": "rms", "sources": [RMS], "types": ["no.such"]}]}, "types"),
        ({"producers": [{"name": "rms", "sources": [RMS], "roles": ["send"]}]}, "roles"),
        ({"tokens": []}, "tokens"),
    ],
)
def test_a_malformed_file_is_refused_without_repeating_its_values(
    tmp_path: Path, content: Any, said: str
) -> None:
    with pytest.raises(ProducerConfigError) as refused:
        load_producers(write(tmp_path, content), EVENTS, development=True)
    assert said in str(refused.value)
    assert "Police_RMS" not in str(refused.value)
    assert "no.such" not in str(refused.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProducerConfigError, match="cannot read"):
        load_producers(tmp_path / "absent.yaml", EVENTS, development=True)


def test_a_name_listed_twice_is_refused(tmp_path: Path) -> None:
    twice = {"producers": [{"name": "rms", "sources": [RMS]}, {"name": "rms", "sources": ["b"]}]}
    with pytest.raises(ProducerConfigError, match="'rms' is listed twice"):
        load_producers(write(tmp_path, twice), EVENTS, development=True)


def test_any_source_is_refused_outside_development_only(tmp_path: Path) -> None:
    path = write(tmp_path, {"producers": [{"name": "rms", "sources": ["*"]}]})
    with pytest.raises(ProducerConfigError, match=r"refusing to start: .*any source"):
        load_producers(path, EVENTS, development=False)
    assert load_producers(path, EVENTS, development=True)[0].principal.may_send_for("urn:any")


def test_the_risk_setting_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"producers": [{"name": "rms", "sources": ["*"]}]})
    monkeypatch.setenv("RISK_DIRECT_PRODUCERS_FILE", str(path))
    monkeypatch.setenv("RISK_KAFKA__TOPICS__EVENTS", "p9." + EVENTS)
    settings = RiskSettings()
    assert [p.topic for p in settings.direct_producers(development=True)] == [
        "p9.safeguarding.events.rms.v1"
    ]
    with pytest.raises(ProducerConfigError):
        settings.direct_producers(development=False)
    monkeypatch.delenv("RISK_DIRECT_PRODUCERS_FILE")
    assert RiskSettings().direct_producers(development=False) == []


# -- scopes (pure) -----------------------------------------------------------------------


def missing(**kwargs: Any) -> Any:
    data = {"child_id": "C-1", "episode_id": "EP-1", "risk_grade": "high"}
    return event("child.missing", data, T0, **({"source": RMS} | kwargs))


def test_within_every_scope_nothing_is_refused() -> None:
    scoped = producer(types=frozenset({"child.missing"}), areas=frozenset({"north"}))
    assert out_of_scope(scoped.principal, missing()) == []
    assert out_of_scope(producer().principal, missing(area="south")) == []


def test_each_scope_outside_is_named_without_the_value() -> None:
    scoped = producer(types=frozenset({"child.found"}), areas=frozenset({"south"}))
    refused = out_of_scope(scoped.principal, missing(source="urn:elsewhere:secret"))
    assert [(e.loc, e.msg) for e in refused] == [
        ("source", "this producer may not send for this source"),
        ("type", "this producer may not send events of type child.missing"),
        ("data.area", "this producer may not send events of this area"),
    ]
    assert "secret" not in json.dumps([e.model_dump() for e in refused])
    assert [e.loc for e in out_of_scope(scoped.principal, event_of_area("south"))] == []


def event_of_area(area: str) -> Any:
    data = {"child_id": "C-1", "episode_id": "EP-1"}
    return event("child.found", data, T0, source=RMS, area=area)


# -- risk reading a producer's topic -----------------------------------------------------

RMS_PRODUCER = producer(areas=frozenset({"north"}))


def incident(child: str, event_id: str, **kwargs: Any) -> dict[str, Any]:
    report = {
        "incident_id": f"INC-{child}",
        "category": "neglect",
        "children": [{"child_id": child, "present": False, "age": 9}],
    }
    return envelope("incident.reported", report, T0, event_id=event_id, **kwargs)


def audits(pipeline: Pipeline) -> list[Any]:
    return [
        AuditEvent.model_validate_json(m.value or b"").data
        for m in pipeline.broker.records(AUDIT_TOPIC)
    ]


def letters(pipeline: Pipeline) -> list[DeadLetter]:
    return [
        DeadLetter.model_validate_json(m.value or b"")
        for m in pipeline.broker.records(TOPICS.deadletter)
    ]


def test_an_allowed_event_is_recorded_for_its_producer_and_processed_as_from_ingest() -> None:
    pipeline = Pipeline(FakeClock(T0 + 3 * D), producers=[RMS_PRODUCER])
    sent = incident("C-P1", "p1", source=RMS)

    async def run() -> None:
        await pipeline.send(sent, topic=RMS_PRODUCER.topic)
        # The same event again, from ingest and from the producer: dropped by (source, id).
        await pipeline.send(sent)
        await pipeline.send(sent, topic=RMS_PRODUCER.topic)
        await pipeline.advance(timedelta(minutes=1))

    asyncio.run(run())
    raised = pipeline.alerts()
    assert raised
    assert {a["child_id"] for a in raised} == {"C-P1"}
    assert len(raised) == len({a["alert_id"] for a in raised})
    accepted = audits(pipeline)
    assert [(a.action.value, a.actor) for a in accepted] == [("event.accepted", "police-rms")] * 2
    assert accepted[0].event is not None
    assert (accepted[0].event.source, accepted[0].event.id) == (RMS, "p1")
    assert letters(pipeline) == []
    assert pipeline.metric(pipeline.risk_registry, "safeguard_risk_duplicates_dropped_total") == 2


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [({"source": "urn:elsewhere"}, "source"), ({"source": RMS, "area": "south"}, "data.area")],
)
def test_an_event_outside_its_scopes_is_dead_lettered_forbidden_and_refused(
    overrides: dict[str, str], loc: str
) -> None:
    pipeline = Pipeline(FakeClock(T0 + 3 * D), producers=[RMS_PRODUCER])

    async def run() -> None:
        await pipeline.send(incident("C-P2", "p2", **overrides), topic=RMS_PRODUCER.topic)
        await pipeline.advance(timedelta(minutes=1))

    asyncio.run(run())
    assert pipeline.alerts() == []
    assert pipeline.broker.records(TOPICS.child_views) == []
    assert pipeline.broker.records(TOPICS.outcomes) == []
    (letter,) = letters(pipeline)
    assert letter.reason is DeadLetterReason.FORBIDDEN
    assert letter.topic == RMS_PRODUCER.topic
    assert [e.loc for e in letter.errors] == [loc]
    (refused,) = audits(pipeline)
    assert (refused.action.value, refused.actor) == ("request.refused", "police-rms")
    assert refused.refusal is not None
    assert (refused.refusal.status, refused.refusal.route) == (403, RMS_PRODUCER.topic)
    assert "C-P2" not in (pipeline.broker.records(AUDIT_TOPIC)[0].value or b"").decode()
    deadlettered = "safeguard_risk_deadlettered_total"
    assert pipeline.metric(pipeline.risk_registry, deadlettered, reason="forbidden") == 1


def test_bad_input_on_a_producers_topic_is_dead_lettered_as_on_the_events_topic() -> None:
    pipeline = Pipeline(FakeClock(T0), producers=[RMS_PRODUCER])

    async def run() -> None:
        broken = incident("C-P3", "p3", source=RMS)
        del broken["data"]["category"]
        await pipeline.send(broken, topic=RMS_PRODUCER.topic)

    asyncio.run(run())
    assert [letter.reason for letter in letters(pipeline)] == [DeadLetterReason.INVALID_EVENT]
    assert audits(pipeline) == []


def test_a_producers_topic_read_through_the_route_hop_forwards_with_its_record() -> None:
    topics = RiskTopics(
        alerts="a", outcomes="o", subjects="s", producers={RMS_PRODUCER.topic: RMS_PRODUCER}
    )
    logic = RiskLogic(
        Pipeline(FakeClock(T0)).risk_policy, RiskMetrics(CollectorRegistry()), topics, partitions=4
    )
    view: View[SubjectState] = View(lambda _key: None, logic.decode)
    value = json.dumps(incident("C-P4", "p4", source=RMS)).encode()
    message = Input(RMS_PRODUCER.topic, 1, 7, b"C-P4", value)
    changes = logic.apply(message, view, T0)
    records = [r for change in changes for r in change.records]
    assert [r.topic for r in records] == [AUDIT_TOPIC, "s"]
    assert not any(change.write for change in changes)
    # Decided again (a retried batch): the same record, the same id.
    again = [r for change in logic.apply(message, view, T0) for r in change.records]
    assert again[0] == records[0]
    refused = Input(RMS_PRODUCER.topic, 1, 8, b"C-P4", value.replace(b"north", b"south"))
    with pytest.raises(Forbidden) as raised:
        logic.apply(refused, view, T0)
    assert [r.topic for r in raised.value.records] == [AUDIT_TOPIC]


def test_an_accepted_record_names_the_producer_and_the_event_only() -> None:
    parsed = missing()
    message = Input(RMS_PRODUCER.topic, 0, 3, b"C-1", b"{}")
    record = accepted_record(AUDIT_TOPIC, RMS_PRODUCER, parsed, message, T0)
    audited = AuditEvent.model_validate_json(record.value)
    assert audited.source == "urn:safeguard:risk"
    assert audited.data.actor == "police-rms"
    assert record.key == f"{RMS}|{parsed.id}".encode()
    assert "C-1" not in record.value.decode()
