"""Bounded state and the pieces of the keyed-state processor that are pure logic.

Notify's alert records stay small however long an alert repeats; the alert list pages
through an index; risk's subjects are capped, never silently; transient retries back off
within bounds; Kafka security settings reach aiokafka and kafka-python as configured.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from prometheus_client import CollectorRegistry

from schemas.notifications import AlertAcknowledged
from services.common.kafka import KafkaSettings
from services.common.stream.retry import RetryPolicy
from services.common.streams import broker_credentials
from services.notify.escalation import (
    advance,
    on_acknowledged,
    on_outcome,
    open_record,
    prune_deliveries,
)
from services.notify.index import AlertIndex
from services.notify.ledger import AlertStatus
from services.notify.metrics import NotifyMetrics
from services.risk.caps import DEFAULT_CAPS, cap, fit
from services.risk.state import Fact, Ref, SubjectState, Visit
from tests.unit.test_notify_escalation import (
    CRITICAL,
    LIMITS,
    T0,
    deliver_all,
    outcome,
    raised,
)

# --- notify: one alert unacknowledged through 1,000 repeats ------------------------------


def test_an_alert_repeated_a_thousand_times_stays_under_64_kb() -> None:
    record = open_record(raised(), CRITICAL, T0)
    now = T0
    repeats = 0
    while repeats < 1000:
        decision = advance(record, now, LIMITS)
        repeats += sum(1 for step in decision.steps if step.round > 0)
        for pending in decision.dispatches:
            on_outcome(record, outcome(pending, now), now)
        prune_deliveries(record)
        now += CRITICAL.repeat or timedelta(minutes=30)
    size = len(record.model_dump_json(exclude_defaults=True).encode())
    assert size < 64 * 1024, size
    kinds = [entry.kind for entry in record.timeline]
    assert kinds[0] == "raised"  # the first entries are kept
    compacted = [e for e in record.timeline if e.kind == "compacted"]
    assert len(compacted) == 1
    assert compacted[0].count is not None
    # Nothing is lost from the count: kept entries plus what was folded add up.
    assert compacted[0].count + len(record.timeline) - 1 >= 2 * repeats
    assert record.timeline[-1].at >= now - 2 * (CRITICAL.repeat or timedelta(0))


def test_pruning_keeps_what_a_resolution_and_a_late_outcome_need() -> None:
    record = open_record(raised(), CRITICAL, T0)
    first = advance(record, T0, LIMITS)
    deliver_all(record, first, T0)
    later = T0 + timedelta(minutes=16)
    second = advance(record, later, LIMITS)  # level 2, not yet answered
    prune_deliveries(record)
    kept = set(record.deliveries)
    assert {p.notification_id for p in first.dispatches} <= kept  # desk reached at level 1
    assert {p.notification_id for p in second.dispatches} <= kept  # still pending


def test_an_acknowledged_alert_stops_growing() -> None:
    record = open_record(raised(), CRITICAL, T0)
    deliver_all(record, advance(record, T0, LIMITS), T0)
    on_acknowledged(
        record, AlertAcknowledged(alert_id="al-1", by="dm", principal="dm", acknowledged_at=T0)
    )
    length = len(record.timeline)
    assert not advance(record, T0 + timedelta(days=30), LIMITS).steps
    assert len(record.timeline) == length


# --- notify: the alert list's index ------------------------------------------------------


def _index(count: int) -> AlertIndex:
    index = AlertIndex(NotifyMetrics(CollectorRegistry()))
    for n in range(count):
        alert = raised(f"al-{n:04d}").model_copy(
            update={
                "raised_at": T0 + timedelta(minutes=n // 3),  # ties: the id breaks them
                "area": "north" if n % 2 else "south",
                "rule": "welfare-check" if n % 5 == 0 else "child-in-custody",
            }
        )
        record = open_record(alert, CRITICAL, T0)
        if n % 7 == 0:
            record.status = AlertStatus.RESOLVED
        index.put(alert.alert_id, record)
    return index


def test_the_index_follows_writes_and_its_gauges_count_by_status() -> None:
    index = _index(100)
    assert len(index) == 100
    metrics = index._metrics  # noqa: SLF001 - the gauges the index keeps
    resolved = sum(1 for n in range(100) if n % 7 == 0)
    assert metrics.alerts_open._value.get() == 100 - resolved  # noqa: SLF001
    # Each alert has its own trigger here: grouping finds only itself.
    assert index.same_trigger("urn:test", "al-0001") <= {"al-0001"}
    index.put("al-0001", None)
    assert len(index) == 99
    assert metrics.alerts_open._value.get() == 99 - resolved  # noqa: SLF001


# --- risk: per-subject caps --------------------------------------------------------------


def _busy_offender(visits: int) -> SubjectState:
    state = SubjectState(kind="offender", id="O-1")
    for n in range(visits):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=n)
        state.visits.append(Visit(at=at, ref=Ref(source="urn:x", id=f"v-{n}")))
        state.seen[f"urn:x|v-{n}"] = at
        state.facts.setdefault("offender-visit", []).append(
            Fact(at=at, ref=Ref(source="urn:x", id=f"v-{n}"))
        )
    return state


def test_caps_drop_the_oldest_and_say_how_many() -> None:
    state = _busy_offender(DEFAULT_CAPS["visits"] + 25)
    capped = cap(state)
    assert capped.dropped["visits"] == 25
    assert capped.dropped["facts"] == DEFAULT_CAPS["visits"] + 25 - DEFAULT_CAPS["facts"]
    assert len(state.visits) == DEFAULT_CAPS["visits"]
    assert state.visits[0].ref.id == "v-25"  # the newest are kept


def test_a_subject_under_its_caps_is_left_alone() -> None:
    state = _busy_offender(10)
    assert cap(state).dropped == {}
    assert len(state.visits) == 10


def test_a_record_always_fits_the_producer_limit() -> None:
    state = _busy_offender(DEFAULT_CAPS["visits"])
    raw, capped = fit(state, max_bytes=20_000)
    assert len(raw) <= 20_000
    assert capped.dropped


# --- processor: retries and Kafka security -----------------------------------------------


def test_retry_backoff_grows_and_is_bounded() -> None:
    policy = RetryPolicy(first_delay_seconds=0.2, max_delay_seconds=10)
    delays = [policy.delay(n) for n in range(12)]
    assert delays[0] == 0.2
    assert delays == sorted(delays)
    assert max(delays) == 10


def _kafka(protocol: str, **extra: object) -> KafkaSettings:
    return KafkaSettings.model_validate({"security_protocol": protocol, **extra})


def test_plaintext_reaches_aiokafka_as_plaintext() -> None:
    assert broker_credentials(_kafka("PLAINTEXT")) is None
    assert credentials_to_aiokafka_auth(None)["security_protocol"] == "PLAINTEXT"


def test_ssl_reaches_aiokafka_with_an_ssl_context() -> None:
    options = credentials_to_aiokafka_auth(broker_credentials(_kafka("SSL")))
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_ssl_stays_sasl_ssl() -> None:
    settings = _kafka(
        "SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="risk", sasl_password="pw"
    )
    options = credentials_to_aiokafka_auth(broker_credentials(settings))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "risk"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    python = settings.kafka_python_options()
    assert python["security_protocol"] == "SASL_SSL"
    assert python["sasl_mechanism"] == "SCRAM-SHA-512"


def test_sasl_plaintext_has_no_ssl_context() -> None:
    settings = _kafka("SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    options = credentials_to_aiokafka_auth(credentials)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["ssl_context"] is None


def test_a_ca_file_is_loaded_into_the_context(tmp_path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(FileNotFoundError):
        broker_credentials(_kafka("SSL", ssl_cafile=str(missing)))
    settings = _kafka("SSL", ssl_cafile=str(missing))
    assert settings.kafka_python_options()["ssl_cafile"] == str(missing)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_password": "x"}, "needs sasl_mechanism"),
        ({"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN"}, "not used with"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "ssl_cafile": "ca"},
            "not used with",
        ),
        ({"security_protocol": "SSL", "ssl_certfile": "cert.pem"}, "go together"),
    ],
)
def test_inconsistent_security_settings_are_refused_at_start_up(
    settings: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        KafkaSettings.model_validate(settings)


def test_a_client_certificate_reaches_kafka_python() -> None:
    settings = _kafka("SSL", ssl_certfile="cert.pem", ssl_keyfile="key.pem")
    options = settings.kafka_python_options()
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == ("cert.pem", "key.pem")
