"""The assurance pack from a known data set: records produced onto the topics as risk,
notify, ingest and the audit trail publish them, projected by the real projector into a
real PostgreSQL, the pack asked of an in-process desk (its clock fixed).

Every section's figures are asserted from the JSON; the same inputs give the same
SHA-256; an area-scoped lead gets only their area's pack; every generation is audited;
the PDF is rendered to PNG with pdftoppm (`UPDATE_SCREENSHOTS=1` writes its first page
to docs/screenshots/assurance-pack.png, which the README shows).

The known set, period 2026-Q3, figures as of 2026-10-01T00:00Z (obligations due at noon):

| id | area | rule | due | what happened |
|---|---|---|---|---|
| n1 | north | social-care-referral | 5 Jul | met 2 h early |
| n2 | north | social-care-referral | 6 Jul | met 1 h early as claimed, recorded 5 h after the deadline |
| n3 | north | social-care-referral | 7 Jul | met 30 days late |
| n4 | north | social-care-referral | 1 Aug | never met (child C-KP-4): alert escalated to levels 2 and 3 |
| n5 | north | social-care-referral | 2 Aug | closed by hand, `duplicate` |
| w1, w2 | north | welfare-check | 1, 2 Sep | met on time |
| c1 | north | child-in-custody | 10 Jul | transfer requested, refused, still held |
| c2 | north | child-in-custody | 11 Jul | transfer requested and made on time |
| p1 | north | welfare-check | 5 Oct | not yet due (open: capacity only) |
| s1 | south | social-care-referral | 3 Jul | met on time |
| h* | north | social-care-referral 2026-Q1 (1) and Q2 (2), welfare-check Q2 (1, late) | | the trend |
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from devtools.broker import create_topics
from devtools.stack import DEFAULT_POLICY
from schemas.alerts import Severity, SubjectKind
from schemas.deadletter import DeadLetter, DeadLetterReason
from schemas.errors import FieldError
from schemas.notifications import AlertEscalated, EscalationReason, alert_escalated_event
from schemas.outcomes import ObligationOutcome, OutcomeKind, outcome_event
from schemas.views import ChildView, RefusedFulfilment, child_view_event
from services.common.auth import Role
from services.common.clock import FakeClock
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.broker import read_all
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.events import envelope
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.stack import wait_until
from tests.fixtures.tokens import TokenSet
from tests.fixtures.views import alert_view, alert_view_record, audit_record, closed_record

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
NOW = AS_OF + timedelta(days=1)
D, H = timedelta(days=1), timedelta(hours=1)
SCR = "social-care-referral"
TOKENS = (
    TokenSet()
    .add("lead-north", roles=[Role.LEAD], areas=["north"])
    .add("lead-all", roles=[Role.LEAD])
    .add("dpo", roles=[Role.AUDIT])
    .add("duty-north", roles=[Role.READ, Role.ACKNOWLEDGE], areas=["north"])
    .add("reader-only", roles=[Role.READ])
)


def noon(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def outcome(
    oid: str,
    kind: str,
    *,
    due: datetime,
    rule: str = SCR,
    area: str = "north",
    window: timedelta = D,
    fulfilled: datetime | None = None,
    recorded_late: float | None = None,
    requested: datetime | None = None,
    refused: datetime | None = None,
    subject: str | None = None,
) -> tuple[bytes, bytes]:
    data = ObligationOutcome(
        obligation_id=f"al-kp-{oid}",
        outcome=OutcomeKind(kind),
        rule=rule,
        severity=Severity.HIGH,
        area=area,
        subject_kind=SubjectKind.CHILD,
        subject_id=subject or f"C-KP-{oid.upper()}",
        triggered_at=due - window,
        due_at=due,
        fulfilled_at=fulfilled,
        late_by_seconds=(fulfilled - due).total_seconds() if fulfilled else None,
        recorded_at=fulfilled + H if fulfilled else None,
        recorded_late_by_seconds=recorded_late,
        transfer_requested_at=requested,
        transfer_refused_at=refused,
        at=fulfilled or due,
    )
    return data.obligation_id.encode(), outcome_event(data).to_json()


def obligations() -> list[tuple[bytes, bytes]]:
    met = "met"
    return [
        outcome("n1", met, due=noon(7, 5), fulfilled=noon(7, 5) - 2 * H),
        outcome("n2", met, due=noon(7, 6), fulfilled=noon(7, 6) - H, recorded_late=5 * 3600.0),
        outcome("n3", "breached", due=noon(7, 7)),
        outcome("n3", met, due=noon(7, 7), fulfilled=noon(7, 7) + 30 * D),
        outcome("n4", "opened", due=noon(8, 1), subject="C-KP-4"),
        outcome("n4", "breached", due=noon(8, 1), subject="C-KP-4"),
        outcome("n5", "breached", due=noon(8, 2)),
        outcome("w1", met, due=noon(9, 1), rule="welfare-check", fulfilled=noon(9, 1) - H),
        outcome("w2", met, due=noon(9, 2), rule="welfare-check", fulfilled=noon(9, 2) - H),
        outcome(
            "c1",
            "updated",
            due=noon(7, 10),
            rule="child-in-custody",
            window=4 * H,
            requested=noon(7, 10) - 3 * H,
            refused=noon(7, 10) - 2 * H,
            subject="C-KP-CELL",
        ),
        outcome(
            "c2",
            met,
            due=noon(7, 11),
            rule="child-in-custody",
            window=4 * H,
            fulfilled=noon(7, 11) - H,
            requested=noon(7, 11) - 3 * H,
        ),
        outcome("p1", "opened", due=noon(10, 5), rule="welfare-check", window=6 * D),
        outcome("s1", met, due=noon(7, 3), area="south", fulfilled=noon(7, 3) - H),
        # The trend: 2026-Q1 and Q2 all on time for referrals; Q2's welfare check late.
        outcome("h1", met, due=noon(2, 10), fulfilled=noon(2, 10) - H),
        outcome("h2", met, due=noon(4, 10), fulfilled=noon(4, 10) - H),
        outcome("h3", met, due=noon(5, 10), fulfilled=noon(5, 10) - H),
        outcome("h4", met, due=noon(6, 10), rule="welfare-check", fulfilled=noon(6, 10) + 2 * H),
    ]


def alert_views() -> list[tuple[bytes, bytes]]:
    def view(alert_id: str, rule: str, area: str, child: str, raised: datetime) -> Any:
        return alert_view_record(
            alert_view(
                alert_id, rule=rule, area=area, child_id=child, raised_at=raised, due_at=None
            )
        )

    return [
        view("al-kp-n4", SCR, "north", "C-KP-4", noon(8, 1)),
        view("al-kp-s9", SCR, "south", "C-KP-S", noon(8, 3)),
        view("al-kp-ri", "referral-incomplete", "north", "C-KP-4", noon(8, 4)),
        view("al-kp-rs", "referral-incomplete", "south", "C-KP-S", noon(8, 4)),
        view("al-kp-rm", "repeat-missing", "north", "C-KP-M", noon(9, 4)),
        view("al-kp-ca", "custody-accommodation-refused", "north", "C-KP-CELL", noon(7, 10)),
        # Raised after the period: not counted.
        view("al-kp-late", "repeat-missing", "north", "C-KP-M", noon(10, 1) + H),
    ]


def escalations() -> list[tuple[bytes, bytes]]:
    def escalated(alert_id: str, level: int, at: datetime) -> tuple[bytes, bytes]:
        event = alert_escalated_event(
            AlertEscalated(
                alert_id=alert_id,
                level=level,
                previous_level=level - 1,
                reason=EscalationReason.SCHEDULE,
                scheduled_at=at,
                escalated_at=at,
                recipients=["senior-managers"],
            )
        )
        return alert_id.encode(), event.to_json()

    return [
        escalated("al-kp-n4", 2, noon(8, 1) + H),
        escalated("al-kp-n4", 3, noon(8, 1) + 4 * H),
        escalated("al-kp-s9", 2, noon(8, 3) + H),
        closed_record("al-kp-n5", noon(8, 3), "duplicate"),
    ]


def dead_letters() -> list[tuple[bytes, bytes]]:
    def letter(offset: int, value: str, reason: DeadLetterReason) -> tuple[bytes, bytes]:
        dl = DeadLetter.from_record(
            reason=reason,
            errors=[FieldError(loc="data", msg="invalid")],
            topic="safeguarding.events.v1",
            partition=0,
            offset=offset,
            key=b"k",
            value=value.encode(),
            failed_at=noon(8, 20),
        )
        return b"k", dl.model_dump_json().encode()

    school = json.dumps({"source": "urn:safeguard:source:school-mis", "type": "referral.shared"})
    return [
        letter(1, school, DeadLetterReason.INVALID_EVENT),
        letter(2, school, DeadLetterReason.INVALID_EVENT),
        letter(3, "{not json", DeadLetterReason.INVALID_JSON),
    ]


# (event, arrival): offenders' manager assignments from the DPMU, and a control room
# whose last event arrived on 20 September (silent past the policy's 2 days).
def events() -> list[tuple[dict[str, Any], datetime]]:
    dpmu = "urn:safeguard:source:dpmu"

    def assigned(n: int, offender: str, manager: str, area: str, at: datetime) -> Any:
        data = {"offender_id": offender, "manager_id": manager}
        event = envelope(
            "offender.manager_assigned", data, at, event_id=f"om-{n}", source=dpmu, area=area
        )
        return event, at + H

    return [
        assigned(1, "O-1", "OM-1", "north", noon(7, 1)),
        assigned(2, "O-2", "OM-1", "north", noon(7, 1)),
        assigned(3, "O-3", "OM-1", "north", noon(7, 1)),
        assigned(4, "O-4", "OM-2", "north", noon(7, 1)),
        assigned(5, "O-3", "OM-2", "north", noon(8, 1)),  # reassigned: the latest wins
        assigned(6, "O-1", "OM-2", "north", noon(6, 1)),  # older: changes nothing
        assigned(7, "O-5", "OM-3", "south", noon(9, 30)),
        (
            envelope(
                "child.found",
                {"episode_id": "E-1", "child_id": "C-KP-M"},
                noon(9, 20),
                source="urn:safeguard:source:control-room",
            ),
            noon(9, 20),
        ),
    ]


def child_views() -> list[tuple[bytes, bytes]]:
    view = ChildView(
        child_id="C-KP-9",
        revision=1,
        as_of=noon(8, 5),
        level="low",
        score=0,
        factors=[],
        obligations=[],
        recent_events=[],
        refused_fulfilments=[
            RefusedFulfilment(
                rule="welfare-check",
                source="urn:safeguard:source:school",
                at=noon(8, 5) - H,
                recorded_at=noon(8, 5),
                area="north",
            )
        ],
    )
    return [(b"C-KP-9", child_view_event(view).to_json())]


def audit() -> list[tuple[bytes, bytes]]:
    at = noon(8, 10)
    return [
        *[audit_record("child.viewed", actor="duty-north", child_id="C-KP-4", at=at)] * 2,
        *[
            audit_record("child.viewed", actor="analyst-x", child_id="C-KP-4", at=at + n * H)
            for n in range(3)
        ],
        audit_record("child.viewed", actor="analyst-x", child_id="C-KP-S", at=at),
        audit_record("alert.acknowledged", actor="duty-north", alert_id="al-kp-n4", at=at),
        audit_record("audit.searched", actor="dpo", child_id="C-KP-4", at=at),
        audit_record("alerts.listed", actor="reader-only", at=at),
        # After the pack's moment: not counted.
        audit_record("child.viewed", actor="reader-only", child_id="C-KP-4", at=AS_OF + H),
    ]


@dataclass
class Env:
    desk: DeskServer
    audit_topic: str
    bootstrap: str

    def pack(self, token: str, **params: str) -> httpx.Response:
        query = {"period": "2026-Q3", "as_of": "2026-10-01T00:00:00Z", **params}
        return loopback.get(
            f"{self.desk.url}/v1/reports/pack",
            params=query,
            headers={"Authorization": f"Bearer {TOKENS.secret(token)}"},
            timeout=120,
        )


def policy(folder: Path) -> Path:
    document = yaml.safe_load(DEFAULT_POLICY.read_text())
    document["assurance"]["caseload-threshold"] = 1
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def env(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"p{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"p{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    produced = 0
    for topic, records in (
        (topics.outcomes, obligations()),
        (topics.alert_views, alert_views()),
        (topics.notifications, escalations()),
        (topics.deadletter, dead_letters()),
        (topics.child_views, child_views()),
        (audit_topic, audit()),
    ):
        for key, value in records:
            producer.send(topic, key=key, value=value).get(timeout=10)
            produced += 1
    for event, arrived in events():
        producer.send(
            topics.events,
            key=b"k",
            value=json.dumps(event).encode(),
            timestamp_ms=int(arrived.timestamp() * 1000),
        ).get(timeout=10)
        produced += 1
    producer.close()
    folder = tmp_path_factory.mktemp("pack")
    settings = desk_settings(
        database_url=postgres.create(),
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"desk-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        policy_file=policy(folder),
    )
    desk = DeskServer(settings, clock=FakeClock(NOW)).start()
    try:
        assert wait_until(
            lambda: (
                sum(
                    desk.metric("safeguard_desk_projector_records_total", topic=t)
                    for t in (
                        "outcomes",
                        "alert_views",
                        "notifications",
                        "deadletter",
                        "child_views",
                        "audit",
                        "events",
                    )
                )
                >= produced
            ),
            timeout=60,
        )
        yield Env(desk, audit_topic, kafka_bootstrap)
    finally:
        desk.stop()


@pytest.fixture(scope="module")
def partnership(env: Env) -> dict[str, Any]:
    answer = env.pack("lead-all")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def north(env: Env) -> dict[str, Any]:
    answer = env.pack("lead-north")  # the lead's one area, unasked
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_provenance_names_the_period_the_moment_and_the_versions(
    partnership: dict[str, Any],
) -> None:
    p = partnership["provenance"]
    assert (p["period"], p["from"], p["to"]) == (
        "2026-Q3",
        "2026-07-01T00:00:00Z",
        "2026-10-01T00:00:00Z",
    )
    assert p["as_of"] == "2026-10-01T00:00:00Z"
    assert p["area"] is None
    assert p["previous_periods"] == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    assert p["policy_version"].startswith("sha256:")
    assert p["software_version"].startswith("safeguard ")


def test_timeliness_per_rule_with_the_trend_and_the_worse_rules_first(
    north: dict[str, Any],
) -> None:
    rules = {r["rule"]: r for r in north["timeliness"]["rules"]}
    assert next(r["rule"] for r in north["timeliness"]["rules"]) == SCR
    scr = rules[SCR]
    assert (scr["due"], scr["met_on_time"], scr["met_recorded_late"], scr["met_late"]) == (
        5,
        1,
        1,
        1,
    )
    assert (scr["open_overdue"], scr["closed_by_hand"]) == (1, 1)
    assert scr["closed_by_hand_by_reason"] == {"duplicate": 1}
    assert scr["on_time_percent"] == 20.0
    assert [t["on_time_percent"] for t in scr["trend"]] == [None, None, 100.0, 100.0, 20.0]
    assert (scr["change_points"], scr["worse"]) == (-80.0, True)
    # lateness of the met and the overdue: 0, 0, 30 d, 60.5 d (open at as_of)
    assert scr["lateness_median_seconds"] == 0
    assert scr["lateness_p90_seconds"] == round(60.5 * 86400)
    assert scr["sentence"] == "2 of 4 over 25 days"
    welfare = rules["welfare-check"]
    assert (welfare["due"], welfare["met_on_time"], welfare["worse"]) == (2, 2, False)
    assert [t["on_time_percent"] for t in welfare["trend"]] == [None, None, None, 0.0, 100.0]
    custody = rules["child-in-custody"]
    assert custody["transfers"] == {"requested": 2, "made": 1, "refused": 1}
    assert (custody["change_points"], custody["worse"]) == (None, False)
    assert north["headline"]["worse"] == [SCR]
    assert north["headline"]["due"] == 9
    assert north["headline"]["on_time_percent"] == 44.4
    assert north["headline"]["sentence"] == "3 of 8 over 25 days"


def test_the_findings_one_by_one_with_the_oldest_open_cases(north: dict[str, Any]) -> None:
    findings = {f["id"]: f for f in north["findings"]}
    assert len(findings) == 9
    da = findings["domestic-abuse-information"]
    assert da["figures"]["due"] == 5
    assert da["oldest_open"] == [
        {
            "rule": SCR,
            "area": "north",
            "subject_kind": "child",
            "subject_id": "C-KP-4",
            "days_overdue": 60,
            "days_open": 61,
        }
    ]
    cells = findings["children-in-cells"]
    assert cells["transfers"] == {"requested": 2, "made": 1, "refused": 1}
    assert cells["patterns"] == {"custody-accommodation-refused": 1}
    assert [(c["subject_id"], c["days_overdue"]) for c in cells["oldest_open"]] == [
        ("C-KP-CELL", 82)
    ]
    assert findings["incomplete-referrals"]["patterns"] == {"referral-incomplete": 1}
    assert findings["missing-children"]["patterns"] == {"repeat-missing": 1}
    assert findings["children-not-checked"]["oldest_open"] == []  # p1 is not yet due
    assert findings["senior-oversight"]["escalations"] == {
        "to_senior_managers": 1,
        "to_strategic_leads": 1,
        "alerts_reaching_strategic_leads": 1,
    }
    # No names anywhere: subjects by pseudonymous id only.
    assert "Jane" not in json.dumps(north)


def test_capacity_open_and_overdue_and_caseloads_against_the_threshold(
    north: dict[str, Any], partnership: dict[str, Any]
) -> None:
    [area] = north["capacity"]["areas"]
    assert (area["area"], area["open"], area["overdue"]) == ("north", 3, 2)
    caseload = partnership["capacity"]["caseload"]
    assert caseload["threshold"] == 1
    assert caseload["areas"] == [
        {
            "area": "north",
            "offenders": 4,
            "managers": 2,
            "max": 2,
            "median": 2,
            "over_threshold": 2,
        },
        {
            "area": "south",
            "offenders": 1,
            "managers": 1,
            "max": 1,
            "median": 1,
            "over_threshold": 0,
        },
    ]
    assert "OM-1" not in json.dumps(partnership)  # staff are counted, never named


def test_data_quality(partnership: dict[str, Any], north: dict[str, Any]) -> None:
    q = partnership["data_quality"]
    assert q["dead_letters"] == [
        {"source": "(unreadable)", "reason": "invalid_json", "count": 1},
        {"source": "urn:safeguard:source:school-mis", "reason": "invalid_event", "count": 2},
    ]
    assert q["dead_letters_total"] == 3
    assert q["refused_fulfilments"] == [
        {"rule": "welfare-check", "source": "urn:safeguard:source:school", "count": 1}
    ]
    assert q["backdated"] == [{"rule": SCR, "count": 1, "recorded_late_median_seconds": 18000}]
    sources = {s["source"]: s for s in q["sources"]}
    assert sources["urn:safeguard:source:dpmu"]["silent"] is False
    assert sources["urn:safeguard:source:control-room"]["silent"] is True
    assert q["silent_sources"] == ["urn:safeguard:source:control-room"]
    # An area's pack: what has an area; dead letters and sources are the partnership's.
    assert north["data_quality"]["dead_letters"] == []
    assert north["data_quality"]["partnership_wide"] is False
    assert north["data_quality"]["refused_fulfilments"] == q["refused_fulfilments"]


def test_access_by_role_reads_outside_the_usual_area_and_searches(
    partnership: dict[str, Any], north: dict[str, Any]
) -> None:
    a = partnership["access"]
    assert (a["people"], a["viewed"], a["acted"]) == (3, 3, 1)
    assert a["by_role"] == [
        {"role": "(unknown)", "viewed": 1, "acted": 0},
        {"role": "acknowledge", "viewed": 1, "acted": 1},
        {"role": "read", "viewed": 2, "acted": 1},
    ]
    assert a["reads_outside_usual_area"] == {"reads": 1, "readers": 1}
    assert a["audit_searches"] == {"total": 1, "by_kind": {"child": 1}}
    n = north["access"]
    assert (n["people"], n["acted"]) == (2, 1)
    assert n["reads_outside_usual_area"] == {"reads": 0, "readers": 0}
    assert n["audit_searches"] is None


def test_the_same_inputs_give_the_same_sha256_and_the_json_is_what_is_hashed(env: Env) -> None:
    import hashlib  # noqa: PLC0415

    first, second = env.pack("lead-all"), env.pack("lead-all")
    assert first.content == second.content
    sha = first.headers["X-Safeguard-Figures-SHA256"]
    assert hashlib.sha256(first.content).hexdigest() == sha
    html = env.pack("lead-all", format="html")
    assert html.headers["X-Safeguard-Figures-SHA256"] == sha
    assert sha in html.text
    # Another moment is another set of figures.
    later = env.pack("lead-all", as_of="2026-10-01T06:00:00Z")
    assert later.headers["X-Safeguard-Figures-SHA256"] != sha


def test_an_area_scoped_lead_gets_only_their_areas_pack(env: Env, north: dict[str, Any]) -> None:
    assert north["provenance"]["area"] == "north"
    assert env.pack("lead-north", area="south").status_code == 403
    assert env.pack("lead-north", area="north").content == env.pack("lead-north").content
    assert {r["area"] for a in north["capacity"]["areas"] for r in [a]} == {"north"}
    assert env.pack("duty-north").status_code == 403  # read and act: no pack
    assert env.pack("dpo").status_code == 200
    assert env.pack("lead-all", period="2026-13").status_code == 422
    assert env.pack("lead-all", as_of="2027-01-01T00:00:00Z").status_code == 422


def test_every_generation_is_audited(env: Env, partnership: dict[str, Any]) -> None:
    def generated() -> list[dict[str, Any]]:
        return [
            json.loads(r.value)["data"]
            for r in read_all(env.bootstrap, env.audit_topic)
            if json.loads(r.value)["data"]["action"] == "pack.generated"
        ]

    before = len(generated())
    assert env.pack("dpo").status_code == 200
    after = generated()
    assert len(after) == before + 1
    assert after[-1]["actor"] == "dpo"
    assert set(after[-1]) == {"action", "actor", "at"}


def test_the_pdf_is_a4_and_its_first_page_renders(env: Env, tmp_path: Path) -> None:
    answer = env.pack("lead-all", format="pdf")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/pdf"
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(answer.content)
    tool, info = shutil.which("pdftoppm"), shutil.which("pdfinfo")
    assert tool, "pdftoppm (poppler-utils) is installed by `make tools`"
    assert info
    first_page = [tool, "-png", "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run([*first_page, "-r", "80", str(pdf), str(tmp_path / "page")], check=True)  # noqa: S603
    from PIL import Image  # noqa: PLC0415 - Pillow comes with WeasyPrint

    image = Image.open(io.BytesIO((tmp_path / "page.png").read_bytes()))
    width, height = image.size
    assert abs(height / width - 297 / 210) < 0.01  # A4
    darkest, lightest = image.convert("L").getextrema()
    assert darkest < 80 < lightest  # text on paper, not a blank page
    described = subprocess.run([info, str(pdf)], check=True, capture_output=True, text=True)  # noqa: S603
    assert "A4" in described.stdout
    assert "Tagged:          yes" in described.stdout  # PDF/UA: structure for screen readers
    if os.environ.get("UPDATE_SCREENSHOTS"):
        target = REPO / "docs" / "screenshots" / "assurance-pack"
        subprocess.run([*first_page, "-r", "110", str(pdf), str(target)], check=True)  # noqa: S603


def test_the_command_line_writes_the_pdf_and_its_figures_beside_it(
    env: Env, partnership: dict[str, Any], tmp_path: Path
) -> None:
    import hashlib  # noqa: PLC0415

    from typer.testing import CliRunner  # noqa: PLC0415

    from services.cli.main import app  # noqa: PLC0415

    result = CliRunner().invoke(
        app,
        [
            "report",
            "pack",
            "--period",
            "2026-Q3",
            "--as-of",
            "2026-10-01T00:00:00Z",
            "--out",
            str(tmp_path),
            "--url",
            env.desk.url,
        ],
        env={"SAFEGUARD_TOKEN": TOKENS.secret("lead-all")},
    )
    assert result.exit_code == 0, result.output
    pdf = tmp_path / "safeguard-assurance-2026-Q3-partnership.pdf"
    figures = tmp_path / "safeguard-assurance-2026-Q3-partnership.json"
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert json.loads(figures.read_bytes()) == partnership
    assert hashlib.sha256(figures.read_bytes()).hexdigest() in result.output
    refused = CliRunner().invoke(
        app,
        [
            "report",
            "pack",
            "--period",
            "2026-Q3",
            "--area",
            "south",
            "--url",
            env.desk.url,
            "--as-of",
            "2026-10-01T00:00:00Z",
        ],
        env={"SAFEGUARD_TOKEN": TOKENS.secret("lead-north")},
    )
    assert refused.exit_code == 1
    assert "403" in refused.output
