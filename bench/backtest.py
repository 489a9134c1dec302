"""Backtest benchmark: how fast the offline engine replays a year of a large force's events.

    .venv/bin/python bench/backtest.py [--events 1000000] [--profile 100000] [--seed 1]

Generates N synthetic events over one year (incidents with their welfare checks,
referrals and school notices, missing episodes, exploitation concerns, offender
registrations and visits; most obligations met on time, some late, a few never; a few
reports arriving days late), as `safeguard export` would write them, then times
`services.cli.backtest.backtest` over them under the default policy and prints events/s.
Then profiles the replay of the first `--profile` events (cProfile, which slows it) and
prints the functions where the time goes. Prints figures; asserts nothing.
"""

# ruff: noqa: PLR2004 - the synthetic force's proportions are literals, read where used

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.stack import DEFAULT_POLICY  # noqa: E402
from services.cli.backtest import ARRIVAL_FIELD, backtest  # noqa: E402
from services.risk.policy import load_policy  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
AREAS = ["north", "south", "east", "west", "central", "city"]
SOURCE = "urn:safeguard:source:bench"
# Fulfilments come from the sources the default policy accepts for their rules
# (policy/default.yaml `fulfilment-sources`); everything else from the bench's own.
SOURCES = {
    "child.welfare_checked": "urn:safeguard:source:control-room",
    "referral.shared": "urn:safeguard:source:public-protection",
    "return_interview.completed": "urn:safeguard:source:childrens-services",
    "return_interview.shared": "urn:safeguard:source:childrens-services",
    "referral.decided": "urn:safeguard:source:childrens-services",
    "safeguarding.action_taken": "urn:safeguard:source:mash",
    "offender.visited": "urn:safeguard:source:dpmu",
}


class Force:
    """Makes the events of one synthetic force; each case is a burst of related events."""

    def __init__(self, rng: random.Random, children: int) -> None:
        self.rng = rng
        self.children = children
        self.serial = 0
        self.last_referral = ""

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def _referral_id(self) -> str:
        self.last_referral = self._id("R")
        return self.last_referral

    def _event(self, type_: str, at: datetime, data: dict[str, Any]) -> tuple[datetime, str]:
        # Most reports reach the topic within minutes; one in twenty days late.
        rng = self.rng
        delay = (
            timedelta(days=rng.uniform(1, 10))
            if rng.random() < 0.05
            else timedelta(seconds=rng.uniform(5, 900))
        )
        arrival = at + delay
        event = {
            "specversion": "1.0",
            "id": self._id("ev"),
            "source": SOURCES.get(type_, SOURCE),
            "type": type_,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": {"area": rng.choice(AREAS), **data},
            ARRIVAL_FIELD: arrival.isoformat(),
        }
        return arrival, json.dumps(event, separators=(",", ":"))

    def _follow_up(self, at: datetime, window: timedelta) -> datetime | None:
        """When the follow-up happens: mostly in time, sometimes late, sometimes never."""
        roll = self.rng.random()
        if roll < 0.80:
            return at + window * self.rng.uniform(0.05, 0.95)
        if roll < 0.95:
            return at + window * self.rng.uniform(1.05, 4.0)
        return None

    def _child(self) -> str:
        return f"C-{self.rng.randrange(self.children)}"

    def case(self, at: datetime) -> list[tuple[datetime, str]]:
        """One case, chosen by weight: its events, each with its arrival."""
        roll = self.rng.random()
        if roll < 0.57:
            return self._incident(at)
        if roll < 0.82:
            return self._missing(at)
        if roll < 0.97:
            return self._concern(at)
        return self._offender(at)

    def _incident(self, at: datetime) -> list[tuple[datetime, str]]:
        rng = self.rng
        incident = self._id("INC")
        children = [
            {"child_id": self._child(), "present": rng.random() < 0.7, "age": rng.randrange(18)}
            for _ in range(rng.choice([1, 1, 1, 2]))
        ]
        children = list({c["child_id"]: c for c in children}.values())
        category = rng.choice(["domestic_abuse"] * 6 + ["neglect", "other", "online_child_abuse"])
        data: dict[str, Any] = {
            "incident_id": incident,
            "category": category,
            "area": rng.choice(AREAS),
            "children": children,
        }
        if category == "domestic_abuse":
            data["dash_risk"] = rng.choice(["standard", "standard", "medium", "high"])
        out = [self._event("incident.reported", at, data)]
        for child in children:
            child_id = child["child_id"]
            if (when := self._follow_up(at, timedelta(hours=12))) is not None:
                out.append(
                    self._event(
                        "child.welfare_checked",
                        when,
                        {"incident_id": incident, "child_id": child_id, "outcome": "safe"},
                    )
                )
            if (when := self._follow_up(at, timedelta(hours=24))) is not None:
                contents = ["incident_details", "risk_assessment"]
                if rng.random() < 0.1:
                    contents = ["incident_details"]
                out.append(
                    self._referral(when, child_id, "childrens_social_care", incident, contents)
                )
                out.extend(self._decision(when, child_id))
            if child["age"] >= 4 and (when := self._follow_up(at, timedelta(hours=20))):
                out.append(self._referral(when, child_id, "school", incident, ["incident_details"]))
        return out

    def _referral(
        self, at: datetime, child_id: str, agency: str, incident: str, contents: list[str]
    ) -> tuple[datetime, str]:
        data = {
            "referral_id": self._referral_id(),
            "child_id": child_id,
            "agency": agency,
            "incident_id": incident,
            "contents": contents,
        }
        return self._event("referral.shared", at, data)

    def _decision(self, referred: datetime, child_id: str) -> list[tuple[datetime, str]]:
        """Children's social care's decision on the referral just made, if any."""
        when = self._follow_up(referred, timedelta(hours=20))
        if when is None:
            return []
        referral = self.last_referral
        data = {"referral_id": referral, "child_id": child_id, "decision": "early_help"}
        return [self._event("referral.decided", when, data)]

    def _missing(self, at: datetime) -> list[tuple[datetime, str]]:
        rng = self.rng
        child_id, episode = self._child(), self._id("EP")
        grade = rng.choice(["high", "medium", "medium", "low", "no_apparent_risk"])
        out = [
            self._event(
                "child.missing",
                at,
                {"episode_id": episode, "child_id": child_id, "risk_grade": grade},
            )
        ]
        if grade != "no_apparent_risk" and (when := self._follow_up(at, timedelta(hours=1))):
            out.append(
                self._event(
                    "referral.shared",
                    when,
                    {
                        "referral_id": self._referral_id(),
                        "child_id": child_id,
                        "agency": "mash",
                        "episode_id": episode,
                        "contents": ["incident_details", "risk_assessment"],
                    },
                )
            )
            out.extend(self._decision(when, child_id))
        found = at + timedelta(hours=rng.uniform(1, 48))
        out.append(self._event("child.found", found, {"episode_id": episode, "child_id": child_id}))
        if (when := self._follow_up(found, timedelta(hours=72))) is not None:
            out.append(
                self._event(
                    "return_interview.completed",
                    when,
                    {"episode_id": episode, "child_id": child_id},
                )
            )
            if (shared := self._follow_up(when, timedelta(hours=72))) is not None:
                out.append(
                    self._event(
                        "return_interview.shared",
                        shared,
                        {"episode_id": episode, "child_id": child_id},
                    )
                )
        return out

    def _concern(self, at: datetime) -> list[tuple[datetime, str]]:
        rng = self.rng
        child_id, concern = self._child(), self._id("CON")
        level = rng.choice(["low", "medium", "medium", "high"])
        data = {
            "concern_id": concern,
            "child_id": child_id,
            "kind": rng.choice(["sexual", "criminal"]),
            "level": level,
            "age": rng.randrange(8, 18),
        }
        out = [self._event("exploitation.concern_raised", at, data)]
        window = timedelta(hours=4 if level == "high" else 24)
        if (when := self._follow_up(at, window)) is not None:
            action = {
                "action_id": self._id("A"),
                "child_id": child_id,
                "action": "strategy_discussion",
                "concern_id": concern,
            }
            out.append(self._event("safeguarding.action_taken", when, action))
        return out

    def _offender(self, at: datetime) -> list[tuple[datetime, str]]:
        rng = self.rng
        # One registration per offender, then visits to the year's end: a few thousand
        # offenders, as a large force manages. (A pool re-registered again and again
        # grows histories no force has, and the engine's per-offender cost with them.)
        offender = self._id("O")
        level = rng.choice(["very_high", "high", "medium", "medium", "low", "low"])
        out = [
            self._event(
                "offender.registered",
                at,
                {"offender_id": offender, "risk_level": level, "area": rng.choice(AREAS)},
            )
        ]
        visit = self._follow_up(at, timedelta(days=14))
        kind = "initial"
        while visit is not None and visit < START + YEAR:
            out.append(
                self._event("offender.visited", visit, {"offender_id": offender, "visit": kind})
            )
            kind = "routine"
            visit = self._follow_up(visit, timedelta(days=30 if level == "very_high" else 91))
        return out


def generate(count: int, seed: int) -> list[str]:
    """Return about `count` export lines over a year, in arrival order."""
    rng = random.Random(seed)
    force = Force(rng, children=max(100, count // 12))
    # Events per case, measured, so the cases spread `count` events over the whole year.
    sample = sum(len(force.case(START + YEAR * rng.random())) for _ in range(2000)) / 2000
    pending: list[tuple[datetime, str]] = []
    for _ in range(round(count / sample)):
        pending.extend(force.case(START + YEAR * rng.random()))
    pending.sort(key=lambda item: item[0])
    return [line for _, line in pending[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profile", type=int, default=100_000, help="events to profile; 0: none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    policy = load_policy(DEFAULT_POLICY)
    started = time.perf_counter()
    lines = generate(args.events, args.seed)
    print(f"generated {len(lines)} events in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    result = backtest(lines, policy)
    elapsed = time.perf_counter() - started
    total = result.total()
    print(
        f"replayed {result.events} events in {elapsed:.1f} s: {result.events / elapsed:,.0f} events/s"
    )
    print(
        f"  span {result.weeks or 0:.1f} weeks, {result.checks} deadline checks, "
        f"{total.alerts} alerts ({total.breaches} breaches, {total.resolved_late} resolved), "
        f"{total.due} obligations judged, {total.on_time_percent or 0:.1f} % on time, "
        f"rejected {sum(result.rejected.values())}, duplicates {result.duplicates}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory {peak:,.0f} MB (the generated lines included)")
    print(
        f"  a year of 1,000,000 events at this rate: {1_000_000 / (result.events / elapsed) / 60:.1f} min"
    )

    if args.profile:
        subset = lines[: args.profile]
        profiler = cProfile.Profile()
        profiler.enable()
        backtest(subset, policy)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        print(f"\nprofile of the first {len(subset)} events (cProfile), by own time:")
        stats.sort_stats("tottime").print_stats(args.top)
        print(_trim(out.getvalue()))
        out.seek(0)
        out.truncate()
        print("by cumulative time:")
        stats.sort_stats("cumulative").print_stats(args.top)
        print(_trim(out.getvalue()))


def _trim(text: str) -> str:
    """Drop pstats' preamble, keep the table."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(line.replace(str(REPO) + "/", "") for line in lines[start:] if line.strip())


if __name__ == "__main__":
    main()
