"""The inspection's findings, each with the rules and patterns that measure it.

The order is the inspection report's; a finding's figures are its rules' together, and
its oldest open cases are those of its rules. Senior oversight is measured by the
escalations that reached senior managers (level 2) and strategic leads (level 3).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One finding: its id, its heading, its deadline rules and its pattern alerts."""

    id: str
    title: str
    rules: tuple[str, ...]
    patterns: tuple[str, ...] = ()
    summary: str = ""


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "domestic-abuse-information",
        "Domestic abuse: information shared late",
        ("social-care-referral", "school-notification", "marac-referral"),
        summary="Referrals to children's social care, schools and the MARAC after an incident.",
    ),
    Finding(
        "children-not-checked",
        "Children at incidents not checked",
        ("welfare-check",),
        summary="Children present at a domestic-abuse incident seen and checked by an officer.",
    ),
    Finding(
        "incomplete-referrals",
        "Incomplete referrals",
        ("referral-decision",),
        ("referral-incomplete",),
        summary="Referrals lacking what their category requires, and social care's decisions.",
    ),
    Finding(
        "exploitation-waiting",
        "Exploitation concerns waiting",
        ("exploitation-action", "strategy-discussion"),
        summary="Action on exploitation concerns and the strategy discussions they need.",
    ),
    Finding(
        "missing-children",
        "Missing children",
        ("missing-referral", "return-interview", "return-interview-shared"),
        ("repeat-missing",),
        summary="Referrals for missing children, return interviews and their findings shared.",
    ),
    Finding(
        "offender-visits",
        "Offender visits",
        ("offender-initial-visit", "offender-routine-visit", "offender-risk-assessment"),
        summary="Registered offenders visited and assessed at the cadence their risk requires.",
    ),
    Finding(
        "forensic-backlog",
        "Forensic backlogs",
        ("forensic-examination",),
        summary="Devices examined in indecent-imagery enquiries.",
    ),
    Finding(
        "children-in-cells",
        "Children held in cells",
        ("child-in-custody",),
        ("custody-accommodation-refused",),
        summary="Charged children transferred to local-authority accommodation (PACE s.38(6)).",
    ),
    Finding(
        "senior-oversight",
        "Senior oversight",
        (),
        summary="Alerts unacknowledged long enough to reach senior managers and strategic leads.",
    ),
)

#: Pattern rules any finding counts (alerts raised in the period).
PATTERNS: tuple[str, ...] = tuple(p for f in FINDINGS for p in f.patterns)
