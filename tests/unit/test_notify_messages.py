"""What messages say: local times, how long overdue, the countdown to the next
step and whom it reaches, the subject id, guidance per rule, the acknowledge link, and a
grouped message led by its most severe alert. Pure rendering, no I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from devtools.stack import DEFAULT_POLICY
from schemas.alerts import AlertRaised, EventRef, Rule, Severity, SubjectKind
from schemas.notifications import Channel, NotificationPurpose
from services.common.policy_file import PolicyError
from services.notify.content import Content, Presentation
from services.notify.escalation import Limits, advance, open_record
from services.notify.guidance import Guidance, rules_without_guidance
from services.notify.ledger import GroupMember, PendingDelivery
from services.notify.messages import email_message, webhook_body
from services.notify.policy import Chain, ChainLevel, Recipient, chain_for, load_policy
from services.notify.wording import countdown, local_time, span

LONDON = ZoneInfo("Europe/London")
T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)  # 3 a.m., Friday, GMT
MIN = timedelta(minutes=1)
POLICY = load_policy(DEFAULT_POLICY)
DESK = Recipient(name="duty-desk", channel=Channel.WEBHOOK, url="http://gw/hook", secret="d")
SENIORS = Recipient(name="senior-managers", channel=Channel.EMAIL, to=("s@example.org",))
CHAIN = Chain(
    levels=(
        ChainLevel(level=1, route="duty-manager", after=timedelta(0), recipients=(DESK,)),
        ChainLevel(level=2, route="senior-manager", after=15 * MIN, recipients=(DESK, SENIORS)),
    ),
    repeat=30 * MIN,
    ack_timeout=timedelta(hours=1),
)


def alert(
    alert_id: str = "al-1",
    severity: Severity = Severity.CRITICAL,
    rule: str = "child-in-custody",
    due: timedelta | None = timedelta(hours=6, minutes=5),
    **changes: object,
) -> AlertRaised:
    return AlertRaised.model_validate(
        {
            "alert_id": alert_id,
            "rule": rule,
            "severity": severity,
            "subject_kind": SubjectKind.CHILD,
            "child_id": f"C-{alert_id}",
            "trigger": EventRef(source="urn:test", id="e-1"),
            "due_at": None if due is None else T0 - due,
            "raised_at": T0,
            "summary": f"Summary of {alert_id}.",
        }
        | changes
    )


def handed_over(
    raised: AlertRaised, members: list[AlertRaised] | None = None
) -> tuple[Content, PendingDelivery]:
    """Take the ladder's first step at T0 and return what its message to the desk says."""
    record = open_record(raised, CHAIN, T0)
    decision = advance(record, T0, Limits())
    pending = decision.dispatches[0]
    if members:
        pending.members = [GroupMember.of(a) for a in members]
    content = Content.of(record, pending, "https://desk.example.org/", Presentation.of(POLICY))
    return content, pending


def test_times_read_as_local_wall_clock_across_the_clock_change() -> None:
    assert local_time(datetime(2026, 12, 4, 3, 12, 9, 123456, tzinfo=UTC), LONDON) == (
        "Fri 4 Dec 2026 03:12 GMT"
    )
    # 25 October 2026: 01:30 happens twice in London; the zone's name tells them apart.
    assert local_time(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), LONDON).endswith("01:30 BST")
    assert local_time(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), LONDON).endswith("01:30 GMT")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=59), "under 1 min"),
        (timedelta(minutes=12, seconds=59), "12 min"),
        (timedelta(hours=6, minutes=5), "6 h 5 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(days=20, hours=3, minutes=40), "20 d 3 h"),
        (timedelta(days=3), "3 d"),
        (timedelta(seconds=-5), "under 1 min"),
    ],
)
def test_spans_round_down_to_whole_units(delta: timedelta, text: str) -> None:
    assert span(delta) == text


def test_countdown_never_goes_negative() -> None:
    assert countdown(T0 + 12 * MIN + timedelta(seconds=30), T0) == "in 12 min"
    assert countdown(T0 - MIN, T0) == "now"


def test_the_webhook_keeps_utc_beside_local_times_and_says_what_happens_next() -> None:
    content, pending = handed_over(alert())
    body = json.loads(webhook_body(content, pending))
    assert body["alert"]["due_at"].startswith("2026-12-03T20:55:00")  # UTC, as raised
    assert body["subject"] == {"kind": "child", "id": "C-al-1"}
    assert body["timezone"] == "Europe/London"
    assert body["as_of"] == "2026-12-04T03:00:00Z"
    assert body["due_at_local"] == "Thu 3 Dec 2026 20:55 GMT"
    assert (body["overdue_seconds"], body["overdue_for"]) == (6 * 3600 + 5 * 60, "6 h 5 min")
    assert body["next_step"] == {
        "at": "2026-12-04T03:15:00Z",
        "at_local": "Fri 4 Dec 2026 03:15 GMT",
        "in_seconds": 900,
        "kind": "level",
        "level": 2,
        "route": "senior-manager",
        "recipients": ["duty-desk", "senior-managers"],
        "text": "Escalates to level 2 (senior-manager: duty-desk, senior-managers) at "
        "Fri 4 Dec 2026 03:15 GMT, in 15 min, unless acknowledged.",
    }
    assert body["console_url"] == "https://desk.example.org/console/alerts/al-1"
    assert body["acknowledge_url"] == "https://desk.example.org/console/alerts/al-1?act=acknowledge"
    assert body["guidance"]["call"][0] == "Custody inspector"
    assert "Concordat on Children in Custody" in body["guidance"]["basis"]


def test_the_top_of_the_ladder_says_nobody_further_is_told() -> None:
    top = Chain(levels=CHAIN.levels[:1], repeat=None, ack_timeout=timedelta(hours=1))
    record = open_record(alert(), top, T0)
    pending = advance(record, T0, Limits()).dispatches[0]
    content = Content.of(record, pending, None, Presentation.of(POLICY))
    assert "next_step" not in json.loads(webhook_body(content, pending))
    text = email_message(content, pending, sender="s@x").get_body(preferencelist=("plain",))
    assert text is not None
    assert "Next: Nobody further: this is the top of the ladder." in text.get_content()


def test_a_group_is_headed_by_its_most_severe_alert() -> None:
    medium = alert("al-m", Severity.MEDIUM, "school-notification")
    highs = [alert("al-h1", Severity.HIGH, "welfare-check"), alert("al-h2", Severity.HIGH)]
    # The medium alert's hold ended first, so its message lists the group.
    content, pending = handed_over(medium, [medium, *highs])
    body = json.loads(webhook_body(content, pending))
    assert body["alert"]["alert_id"] == "al-h1"  # high, then the longest overdue, then id
    assert [a["alert_id"] for a in body["alerts"]] == ["al-h1", "al-h2", "al-m"]
    assert body["alerts"][0]["guidance"]["action"].startswith("Send officers to see the child")
    mail = email_message(content, pending, sender="s@example.org")
    assert mail["Subject"] == "[Safeguard] Level 1: 3 alerts from one event, highest high"
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    assert lines[0] == "Summary of al-h1."
    listed = [line for line in lines if line.startswith("- ")]
    assert [line.split(" ")[1:3] for line in listed] == [
        ["high", "welfare-check,"],
        ["high", "child-in-custody,"],
        ["medium", "school-notification,"],
    ]
    assert "child C-al-m" in listed[2]
    assert "?act=acknowledge" in listed[0]
    # Guidance once per rule listed.
    assert sum(line.startswith("What to do (") for line in lines) == 3


def test_the_email_is_readable_at_three_in_the_morning() -> None:
    content, pending = handed_over(alert(area=None))
    pending.recipient = SENIORS
    mail = email_message(content, pending, sender="s@example.org")
    assert mail["Subject"] == "[Safeguard] Level 1: critical child-in-custody, overdue 6 h 5 min"
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    plain = text.get_content()
    for expected in (
        "Subject: child C-al-1",
        "Area: not recorded",
        "Raised: Fri 4 Dec 2026 03:00 GMT",
        "Due: Thu 3 Dec 2026 20:55 GMT",
        "Overdue for: 6 h 5 min (at Fri 4 Dec 2026 03:00 GMT)",
        (
            "Next: Escalates to level 2 (senior-manager: duty-desk, senior-managers) at "
            "Fri 4 Dec 2026 03:15 GMT, in 15 min, unless acknowledged."
        ),
        "Acknowledge: https://desk.example.org/console/alerts/al-1?act=acknowledge",
        "What to do (child-in-custody): Review the child's detention now",
        "Call: Custody inspector; Local authority emergency duty team (accommodation)",
    ):
        assert expected in plain, expected
    assert "Area: -" not in plain
    assert "+00:00" not in plain  # no ISO times, no microseconds
    assert "Custody inspector" in html.get_content()
    assert (
        "href='https://desk.example.org/console/alerts/al-1?act=acknowledge'" in html.get_content()
    )


def test_a_pattern_alert_says_it_has_no_deadline() -> None:
    content, pending = handed_over(alert(rule="repeat-missing", severity=Severity.HIGH, due=None))
    body = json.loads(webhook_body(content, pending))
    assert "overdue_for" not in body
    text = email_message(content, pending, sender="s@x").get_body(preferencelist=("plain",))
    assert text is not None
    assert "Due: no deadline: a pattern of events" in text.get_content()


def test_a_resolution_links_to_the_page_not_to_acknowledge() -> None:
    content, pending = handed_over(alert())
    notice = pending.model_copy(update={"purpose": NotificationPurpose.RESOLUTION})
    resolved = Content(
        **{
            **content.__dict__,
            "resolution": {
                "how": "by_hand",
                "resolved_at": T0.isoformat(),
                "by": "DM 7",
                "reason": "fulfilled_elsewhere",
            },
        }
    )
    body = json.loads(webhook_body(resolved, notice))
    assert "acknowledge_url" not in body
    assert "next_step" not in body
    text = email_message(resolved, notice, sender="s@x").get_body(preferencelist=("plain",))
    assert text is not None
    plain = text.get_content()
    assert "Resolved: Fri 4 Dec 2026 03:00 GMT: closed by DM 7 (fulfilled elsewhere)" in plain
    assert "Open: https://desk.example.org/console/alerts/al-1\n" in plain


def test_the_default_policy_has_guidance_for_every_rule() -> None:
    assert rules_without_guidance(POLICY.guidance) == []
    for rule in Rule:
        guidance = POLICY.guidance_for(rule.value)
        assert guidance is not None
        assert guidance.call
        assert guidance.basis


@pytest.mark.parametrize(
    "text",
    ["Call 0161 856 0000", "Ring +44 20 7946 0000", "Email duty.inspector@force.police.uk"],
)
def test_guidance_refuses_contact_details(text: str) -> None:
    with pytest.raises(ValidationError, match="roles, not phone numbers"):
        Guidance(action="Act.", call=(text,), basis="Children Act 1989 s.47")
    # Statutes' section numbers and years are not numbers to call.
    Guidance(action="Act.", call=("Custody inspector",), basis="PACE 1984 s.38(6); WT 2023 ch.3")


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text().replace(
        "timezone: Europe/London\n", "timezone: Europe/Londres\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match="unknown time zone 'Europe/Londres'"):
        load_policy(path)


def test_each_alert_of_a_group_counts_down_on_its_own_ladder() -> None:
    """A medium alert leads the group; the high one it lists escalates far sooner."""
    medium = alert("al-m", Severity.MEDIUM, "school-notification")
    high = alert("al-h", Severity.HIGH, "welfare-check")
    hold = timedelta(seconds=30)
    records = {
        a.alert_id: open_record(
            a, chain_for(POLICY, a.severity, None, default_url="http://gw/hook"), T0, hold=hold
        )
        for a in (medium, high)
    }
    later = T0 + hold
    decision = advance(
        records["al-m"],
        later,
        Limits(),
        siblings=lambda r: [s for s in records.values() if s is not r],
    )
    (pending,) = decision.dispatches
    assert [m.alert_id for m in pending.members] == ["al-m", "al-h"]
    content = Content.of(records["al-m"], pending, None, Presentation.of(POLICY))
    body = json.loads(webhook_body(content, pending))
    assert body["alert"]["alert_id"] == "al-h"
    # The high alert's own ladder: senior managers 1 h after its raise, not the
    # medium one's 24 h.
    assert (body["next_step"]["at"], body["next_step"]["route"]) == (
        "2026-12-04T04:00:00Z",
        "senior-manager",
    )
    assert "in 59 min" in body["next_step"]["text"]
    steps = {a["alert_id"]: a["next_step"]["at"] for a in body["alerts"]}
    assert steps == {"al-h": "2026-12-04T04:00:00Z", "al-m": "2026-12-05T03:00:00Z"}
    text = email_message(content, pending, sender="s@x").get_body(preferencelist=("plain",))
    assert text is not None
    assert "overdue 6 h 5 min, level 2 in 59 min" in text.get_content()
    assert "level 2 in 23 h 59 min" in text.get_content()
