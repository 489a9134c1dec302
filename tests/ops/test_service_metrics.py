"""What every service's registry carries (process, platform, build, policy; no `_created`),
and the notify series the service levels and the dashboard's filters are built on."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.alerts import AlertRaised, EventRef, Severity, SubjectKind
from schemas.notifications import Channel, NotificationPurpose
from services.common.clock import FakeClock
from services.common.metrics import record_policy, service_registry
from services.common.smtp import SmtpSettings
from services.notify.channels import EmailChannel, WebhookChannel
from services.notify.delivery import Content, Deliverer
from services.notify.escalation import open_record
from services.notify.index import AlertIndex
from services.notify.ledger import AlertStatus, PendingDelivery
from services.notify.metrics import MAX_AREAS, NotifyMetrics
from services.notify.policy import Chain, ChainLevel, Recipient
from services.notify.retry import Backoff

T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://x/h", secret="s")
CHAIN = Chain(
    levels=(
        ChainLevel(level=1, route="duty", after=timedelta(0), recipients=(DESK,)),
        ChainLevel(level=2, route="senior", after=timedelta(minutes=15), recipients=(DESK,)),
    ),
    repeat=timedelta(minutes=30),
    ack_timeout=timedelta(hours=1),
)


def samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Return every sample of a registry's exposition, by sample name."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def alert(alert_id: str, severity: Severity, area: str | None = "north") -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id,
        rule="child-in-custody",
        severity=severity,
        subject_kind=SubjectKind.CHILD,
        child_id="C-1",
        area=area,
        trigger=EventRef(source="urn:x", id=f"e-{alert_id}"),
        due_at=T0 - timedelta(hours=1),
        raised_at=T0,
        summary="A child has been in custody for 4 hours.",
    )


# -- every service's registry -----------------------------------------------------------


def test_the_registry_has_process_platform_and_build_series() -> None:
    registry = service_registry({"SAFEGUARD_REVISION": "0123abc"})
    found = samples(registry)
    assert "process_resident_memory_bytes" in found
    assert "process_start_time_seconds" in found
    assert "process_open_fds" in found
    assert "python_info" in found
    assert "python_gc_objects_collected_total" in found
    (labels, value), *more = found["safeguard_build_info"]
    assert not more
    assert labels == {"version": metadata.version("safeguard"), "revision": "0123abc"}
    assert value == 1


def test_the_revision_is_unknown_unless_the_image_build_set_it() -> None:
    found = samples(service_registry({"SAFEGUARD_REVISION": "  "}))
    assert found["safeguard_build_info"][0][0]["revision"] == "unknown"
    found = samples(service_registry({}))
    assert found["safeguard_build_info"][0][0]["revision"] == "unknown"


def test_counters_and_histograms_expose_no_created_series() -> None:
    registry = service_registry({})
    Counter("x_things_total", "Things.", ["kind"], registry=registry).labels(kind="a").inc()
    Histogram("x_wait_seconds", "Waits.", registry=registry).observe(1)
    names = set(samples(registry))
    assert {"x_things_total", "x_wait_seconds_bucket", "x_wait_seconds_count"} <= names
    assert not [n for n in names if n.endswith("_created")]


def test_the_policy_loaded_is_exposed_by_its_digest(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(b"obligations: {}\n")
    registry = CollectorRegistry()
    digest = record_policy(registry, policy)
    assert digest == hashlib.sha256(b"obligations: {}\n").hexdigest()[:12]
    assert samples(registry)["safeguard_policy_info"] == [({"sha256": digest}, 1.0)]


# -- notify: unresolved alerts by area, rule, severity; escalated unacknowledged ---------


def test_unresolved_alerts_are_counted_by_area_rule_severity_and_status() -> None:
    registry = CollectorRegistry()
    index = AlertIndex(NotifyMetrics(registry))
    open_critical = open_record(alert("al-1", Severity.CRITICAL), CHAIN, T0)
    index.put("al-1", open_critical)
    index.put("al-2", open_record(alert("al-2", Severity.HIGH, area=None), CHAIN, T0))
    acknowledged = open_record(alert("al-3", Severity.CRITICAL), CHAIN, T0).model_copy(
        update={"status": AlertStatus.ACKNOWLEDGED}
    )
    index.put("al-3", acknowledged)
    resolved = open_record(alert("al-4", Severity.CRITICAL), CHAIN, T0).model_copy(
        update={"status": AlertStatus.RESOLVED}
    )
    index.put("al-4", resolved)

    found = samples(registry)
    unresolved = {
        (labels["area"], labels["severity"], labels["status"]): value
        for labels, value in found["safeguard_notify_alerts_unresolved"]
    }
    assert unresolved == {
        ("north", "critical", "open"): 1,
        ("none", "high", "open"): 1,
        ("north", "critical", "acknowledged"): 1,
    }
    escalated = {
        labels["severity"]: value
        for labels, value in found["safeguard_notify_alerts_unacknowledged_escalated"]
    }
    assert escalated == {"critical": 0, "high": 0, "medium": 0}

    # Past the first escalation step (level 2) with nobody acknowledging: counted; then
    # acknowledged: not any more; then gone from the table: not counted at all.
    index.put("al-1", open_critical.model_copy(update={"level": 2}))
    escalated = {
        labels["severity"]: value
        for labels, value in samples(registry)["safeguard_notify_alerts_unacknowledged_escalated"]
    }
    assert escalated["critical"] == 1
    index.put(
        "al-1", open_critical.model_copy(update={"level": 2, "status": AlertStatus.ACKNOWLEDGED})
    )
    escalated = {
        labels["severity"]: value
        for labels, value in samples(registry)["safeguard_notify_alerts_unacknowledged_escalated"]
    }
    assert escalated["critical"] == 0
    index.put("al-1", None)
    index.put("al-3", None)
    unresolved = {
        (labels["area"], labels["severity"], labels["status"]): value
        for labels, value in samples(registry)["safeguard_notify_alerts_unresolved"]
    }
    assert unresolved == {("none", "high", "open"): 1}


def test_areas_past_the_limit_are_counted_as_other() -> None:
    registry = CollectorRegistry()
    index = AlertIndex(NotifyMetrics(registry))
    for n in range(MAX_AREAS + 5):
        a = alert(f"al-{n}", Severity.MEDIUM, area=f"area-{n:03d}")
        index.put(a.alert_id, open_record(a, CHAIN, T0))
    found = samples(registry)["safeguard_notify_alerts_unresolved"]
    areas = {labels["area"] for labels, _ in found}
    assert len(areas) == MAX_AREAS + 1
    assert sum(value for labels, value in found if labels["area"] == "other") == 5


# -- notify: from the raise to the first attempt at level 1 -----------------------------


def first_attempt(
    pending: PendingDelivery, started: datetime
) -> list[tuple[dict[str, str], float]]:
    registry = CollectorRegistry()
    clock = FakeClock(started)
    deliverer = Deliverer(
        webhook=WebhookChannel(clock),
        email=EmailChannel(SmtpSettings(host="127.0.0.1", port=1, security="none")),
        secrets={},  # no secret: a final failure without any network, after the attempt starts
        backoff=Backoff(initial_seconds=1, max_seconds=8),
        clock=clock,
        metrics=NotifyMetrics(registry),
    )
    content = Content(alert=alert("al-9", Severity.HIGH), resolution=None)
    result = asyncio.run(deliverer.deliver(content, pending))
    assert result.outcome == "failed"
    return [
        (labels, value)
        for labels, value in samples(registry).get(
            "safeguard_notify_first_attempt_delay_seconds_bucket", []
        )
        if labels["le"] in {"30.0", "45.0", "60.0"}
    ]


def pending_at(level: int, round_: int, *, dispatches: int = 1) -> PendingDelivery:
    return PendingDelivery(
        notification_id=f"al-9:{level}:{round_}:duty-desk",
        purpose=NotificationPurpose.ALERT,
        recipient=DESK,
        level=level,
        round=round_,
        dispatched_at=T0,
        deadline=T0 + timedelta(minutes=5),
        dispatches=dispatches,
    )


def test_the_first_attempt_at_level_1_is_timed_from_the_raise() -> None:
    buckets = first_attempt(pending_at(1, 0), T0 + timedelta(seconds=42))
    assert buckets == [
        ({"channel": "webhook", "le": "30.0"}, 0.0),
        ({"channel": "webhook", "le": "45.0"}, 1.0),
        ({"channel": "webhook", "le": "60.0"}, 1.0),
    ]


def test_repeats_higher_levels_and_hand_overs_again_are_not_timed() -> None:
    late = T0 + timedelta(minutes=20)
    assert first_attempt(pending_at(2, 0), late) == []
    assert first_attempt(pending_at(1, 1), late) == []
    assert first_attempt(pending_at(1, 0, dispatches=2), late) == []
