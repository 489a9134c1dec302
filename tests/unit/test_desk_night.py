"""The night shift's pure parts: the urgency order, the pages' wording (local times,
countdowns, how late, groups, the child's risk level, the handover), what the desk reads
from the policy, the sign-in's kept page, and the command line's wording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devtools.stack import DEFAULT_POLICY
from schemas.views import NextStep
from services.cli.alerts import Group, GroupError, next_short, overdue, queue_rows
from services.desk import present
from services.desk.policy import DEFAULT_ZONE, DeskPolicy
from services.desk.queries import Summary
from services.desk.records import alert_row
from services.desk.settings import DeskSettings
from services.desk.urgency import Tier, next_escalation, urgency
from tests.fixtures.night import BY_ID, MIN, NOW, ORDER, VIEWS, H, night_policy, night_view

LONDON = ZoneInfo("Europe/London")
SEVERITY = {"critical": 0, "high": 1, "medium": 2}


def summary_of(alert_id: str) -> Summary:
    values = alert_row(BY_ID[alert_id]).values
    fields = {k: values[k] for k in Summary.__dataclass_fields__ if k != "next_step"}
    return Summary(**fields, next_step=values["view"].get("next_step"))


# -- the urgency order -------------------------------------------------------------------


def test_the_fixed_set_sorts_into_the_order_worked_out_by_hand() -> None:
    queue = [v for v in VIEWS if v.status.value != "resolved"]
    ranked = sorted(
        queue,
        key=lambda v: (
            SEVERITY[v.alert.severity.value],
            urgency(v).tier,
            urgency(v).at,
            v.alert.alert_id,
        ),
    )
    assert [v.alert.alert_id for v in ranked] == ORDER


def test_each_tier_is_ordered_by_its_own_time() -> None:
    climbing = urgency(BY_ID["al-n-custody"])
    assert climbing == type(climbing)(Tier.ESCALATING, NOW + 5 * MIN)
    topped = urgency(BY_ID["al-n-forensic"])
    assert (topped.tier, topped.at) == (Tier.TOP_OF_LADDER, NOW - timedelta(days=20))
    pattern = urgency(BY_ID["al-n-refused"])  # no deadline: its own age
    assert (pattern.tier, pattern.at) == (Tier.TOP_OF_LADDER, NOW - 30 * MIN)
    acked = urgency(BY_ID["al-n-exploit"])  # re-opens soonest first
    assert (acked.tier, acked.at) == (Tier.ACKNOWLEDGED, NOW + 3 * H + 50 * MIN)
    resolved = urgency(BY_ID["al-n-closed"])
    assert (resolved.tier, resolved.at) == (Tier.RESOLVED, NOW - H)


def test_a_repeat_due_first_does_not_hide_the_climb_after_it() -> None:
    # Critical at level 2: a repeat at +30 min comes before level 3 at +60 min from the raise.
    view = night_view(
        "al-u",
        rule="welfare-check",
        severity="critical",
        child="C-U",
        raised=20 * MIN,
        due=20 * MIN,
        level=2,
        next_step=(10 * MIN, "repeat", 2),
    )
    assert next_escalation(view) == NOW + 40 * MIN
    assert urgency(view).tier is Tier.ESCALATING
    # Re-opened at level 2 ten minutes ago: the ladder restarts there, level 3 45 min on.
    reopened = view.model_copy(update={"reopened_at": NOW - 10 * MIN})
    assert next_escalation(reopened) == NOW - 10 * MIN - 15 * MIN + 60 * MIN
    # At the top there is nothing to climb to; an acknowledged alert does not climb.
    assert next_escalation(BY_ID["al-n-welfare"]) is None
    assert next_escalation(BY_ID["al-n-exploit"]) is None


def test_the_projected_row_carries_the_key_and_the_trigger() -> None:
    values = alert_row(BY_ID["al-n-custody"]).values
    assert (values["urgency_tier"], values["urgency_at"]) == (0, NOW + 5 * MIN)
    assert (values["trigger_source"], values["trigger_id"]) == (
        "urn:safeguard:source:control-room",
        "ev-inc-a",
    )


# -- times, countdowns and how late ------------------------------------------------------


def test_times_are_local_with_the_zone_and_utc_for_machines_and_the_hover() -> None:
    summer = present.when(datetime(2026, 7, 3, 2, 5, tzinfo=UTC), LONDON)
    assert (summer.local, summer.iso, summer.utc) == (
        "Fri 3 Jul 2026 03:05 BST",
        "2026-07-03T02:05:00Z",
        "2026-07-03 02:05 UTC",
    )
    # Across the clock change the abbreviation keeps 01:30 twice apart.
    first = present.when(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), LONDON)
    second = present.when(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), LONDON)
    assert (first.local, second.local) == ("Sun 25 Oct 2026 01:30 BST", "Sun 25 Oct 2026 01:30 GMT")


def test_the_next_step_says_what_when_and_whom() -> None:
    step = NextStep(at=NOW + 12 * MIN, kind="level", level=2, recipients=["a", "b"])
    shown = present.next_step(step, NOW, LONDON)
    assert shown is not None
    assert shown.sentence == (
        "Escalates to level 2 (a, b) in 12 min, at Fri 3 Jul 2026 03:12 BST, unless acknowledged."
    )
    assert shown.short == "Level 2 (a, b) in 12 min"
    late = present.next_step(step, NOW + H, LONDON)
    assert late is not None
    assert late.sentence == "Escalates to level 2 (a, b) now, unless acknowledged."
    reopen = present.next_step(
        step.model_copy(update={"kind": "reopen", "at": NOW + 3 * H}), NOW, LONDON
    )
    assert reopen is not None
    assert reopen.short == "Re-opens in 3 h"
    assert reopen.sentence.endswith("unless resolved.")
    assert present.next_step(None, NOW, LONDON) is None


def test_a_resolved_alert_stops_counting_and_a_pattern_says_its_age() -> None:
    due = NOW - 6 * H
    assert present.lateness(due, due, None, NOW, LONDON).phrase == "overdue 6 h"
    assert (
        present.lateness(due, due, NOW - H, NOW + 30 * H, LONDON).phrase
        == "was overdue 5 h when resolved"
    )
    pattern = present.lateness(None, NOW - 5 * MIN, None, NOW, LONDON)
    assert (pattern.phrase, pattern.pattern) == ("no deadline (a pattern), raised 5 min ago", True)


# -- groups ------------------------------------------------------------------------------


def test_groups_sit_where_their_most_urgent_alert_is_with_counts_and_the_worst() -> None:
    rows = [present.row(summary_of(a), NOW, LONDON) for a in ORDER]
    by_child = present.groups(rows, "child")
    assert [g.key for g in by_child][:3] == ["child:C-NA", "child:C-NB", "child:C-ND"]
    child_a = by_child[0]
    assert [r.alert_id for r in child_a.rows] == [
        "al-n-custody",
        "al-n-refused",
        "al-n-referral",
        "al-n-school",
    ]
    assert (child_a.worst, child_a.counts) == ("critical", {"open": 4, "acknowledged": 0})
    assert child_a.next is not None
    # The soonest step of any of its alerts: al-n-refused's repeat, in a minute.
    assert child_a.next.short == "Level 3 again (duty-desk, strategic-lead) in 1 min"
    by_incident = present.groups(rows, "incident")
    incident = by_incident[0]
    assert incident.key == "urn:safeguard:source:control-room|ev-inc-a"
    assert incident.subjects == ["child C-NA", "child C-NB"]
    exploit = next(g for g in by_child if g.key == "child:C-NE")
    assert exploit.open_ids == []  # acknowledged already: nothing to acknowledge


# -- the child page --------------------------------------------------------------------------


def test_an_open_critical_breach_shows_the_child_at_least_at_high_and_says_why() -> None:
    shown = present.risk_shown("low", 20, [("child-in-custody", "critical")])
    assert (shown.level, shown.scored) == ("high", "low")
    assert shown.why == (
        "At least high while an open breach of child-in-custody (critical) is unmet; "
        "the risk score alone says low (score 20)."
    )
    assert present.risk_shown("critical", 90, [("x", "critical")]).why is None
    assert present.risk_shown("low", 5, [("school-notification", "medium")]).level == "low"


def test_a_closure_by_hand_reads_as_a_sentence_for_every_reason() -> None:
    for reason, sentence in present.REASON_SENTENCES.items():
        assert sentence[0].islower()
        assert "Reason" not in sentence
        assert present.reason_sentence(reason) == sentence
    assert present.reason_sentence(None) == "no reason was given"
    ended = present.outcome(BY_ID["al-n-closed"], LONDON)
    assert (ended.closed, ended.closed_by) == (
        "recorded in another system",
        "By duty-day, Fri 3 Jul 2026 02:00 BST.",
    )


# -- the handover --------------------------------------------------------------------------


def test_the_handover_sorts_a_shift_into_raised_acknowledged_resolved_and_open() -> None:
    found = [(summary_of(v.alert.alert_id), v) for v in VIEWS]
    shift = present.handover(found, NOW - 2 * H - 5 * MIN, NOW, NOW, LONDON)
    assert [r.alert_id for r in shift.raised] == [
        "al-n-custody",
        "al-n-refused",
        "al-n-referral",
        "al-n-missing",
        "al-n-school",
    ]
    assert [(a.row.alert_id, a.by, a.note) for a in shift.acknowledged] == [
        ("al-n-exploit", "duty-day", "Team on the way")
    ]
    assert [r.how for r in shift.resolved] == [
        (
            "Closed by hand, not a fulfilment: recorded in another system. "
            "By duty-day, Fri 3 Jul 2026 02:00 BST."
        )
    ]
    still = [o.row.alert_id for o in shift.still_open]
    assert "al-n-closed" not in still
    assert still[0] == "al-n-welfare"  # critical, longest overdue first
    # A shift that ended before the closure left that alert open at its end.
    earlier = present.handover(found, NOW - 7 * H, NOW - 2 * H, NOW, LONDON)
    closed = next(o for o in earlier.still_open if o.row.alert_id == "al-n-closed")
    assert (closed.late_at_end, closed.now) == ("overdue 4 h", "resolved since")


# -- what the desk reads from the policy ------------------------------------------------------


def test_without_a_policy_file_times_are_london_and_nothing_is_invented() -> None:
    bare = DeskPolicy.load(None)
    assert bare.zone == DEFAULT_ZONE
    assert bare.guidance("welfare-check") is None
    assert bare.on_duty(None, NOW) == []


def test_the_policy_gives_guidance_and_who_is_on_duty(tmp_path: Path) -> None:
    desk_policy = DeskPolicy.load(night_policy(tmp_path / "policy.yaml"))
    guidance = desk_policy.guidance("child-in-custody")
    assert guidance is not None
    assert "Custody inspector" in guidance.call
    everyone = desk_policy.on_duty(None, NOW)
    assert [a.area for a in everyone] == [None, "north"]
    north = {r.route: r for r in everyone[1].routes}
    assert north["duty-manager"].receivers == ("north-night-inspector",)
    assert north["duty-manager"].source == "shifts"
    assert north["duty-manager"].until == datetime(2026, 7, 3, 6, 0, tzinfo=UTC)
    # A calendar the desk does not read: flagged, with who is told when it names nobody.
    assert north["senior-manager"].calendar is True
    assert north["senior-manager"].receivers == ("duty-desk", "senior-managers")
    # A person scoped to areas sees theirs only.
    assert [a.area for a in desk_policy.on_duty(frozenset({"south"}), NOW)] == ["south"]


def test_the_policy_file_is_a_desk_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_TOKENS_FILE", "config/dev-tokens.yaml")
    monkeypatch.setenv("DESK_DATABASE_URL", "postgresql://x@y/z")
    monkeypatch.setenv("DESK_POLICY_FILE", str(DEFAULT_POLICY))
    assert DeskSettings().policy_file == DEFAULT_POLICY  # type: ignore[call-arg]


# -- the sign-in's kept page ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/console/alerts/al-1?act=acknowledge", True),
        ("/console/children/C-1", True),
        ("/console/queue?group=child", True),
        ("/console/handover?from=2026-07-03T00:55&x=a%26b", True),
        ("/console/sign-out", False),
        ("/console/alerts/a/b", False),
        ("/v1/alerts", False),
    ],
)
def test_only_console_pages_are_kept_through_the_sign_in(path: str, *, kept: bool) -> None:
    from aiohttp.test_utils import make_mocked_request  # noqa: PLC0415

    from services.desk.console import next_target  # noqa: PLC0415

    target = next_target(make_mocked_request("GET", path))
    assert (target == path) is kept
    assert target is None or target.startswith("/console/")


# -- the command line's wording ---------------------------------------------------------------


def test_the_command_line_names_groups_and_counts_down() -> None:
    assert Group.parse("child:C-1").filters() == {
        "status": "open",
        "subject_id": "C-1",
        "subject_kind": "child",
    }
    assert Group.parse("incident:ev-1").filters() == {"status": "open", "trigger_id": "ev-1"}
    for bad in ("C-1", "child:", "house:1"):
        with pytest.raises(GroupError):
            Group.parse(bad)
    step = {"at": "2026-07-03T02:05:00Z", "kind": "level", "level": 2, "recipients": ["a"]}
    assert next_short(step, NOW) == "L2 in 5 min: a"
    assert next_short(None, NOW) == "top of the ladder"
    assert overdue({"due_at": None, "raised_at": "2026-07-03T01:30:00+00:00"}, NOW) == (
        "no deadline, raised 30 min ago"
    )
    assert overdue({"due_at": "2026-07-02T20:00:00+00:00", "raised_at": "x"}, NOW) == "6 h"
    row = queue_rows([summary_of("al-n-custody").public()], NOW)[0]
    assert row == [
        "critical",
        "child-in-custody",
        "child:C-NA",
        "10 min",
        "L2 in 5 min: duty-desk, senior-managers",
        "open",
        "north",
        "al-n-custody",
    ]
