"""`safeguard policy diff`: what changes between two policy files, in words.

Both files are loaded as the services load them (services/cli/policies.py), so defaults
count and formatting does not: a duration written `24h` or `1d` is the same window. The
comparison walks the validated policies and says each difference in the words of its
section: windows and severities of obligations, patterns, the risk score, escalation
ladders (each level's route and delay, repeats, acknowledgement timeouts), the group
window, routing by area, receivers, school holidays.

With recorded events, `alert_changes` sets the backtests of both policies side by side
per rule: alerts raised under each, and how many only one of them raises (alert ids do
not depend on the policy, so the same breach has the same id under both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from enum import Enum
from typing import Any

from pydantic import AnyUrl, BaseModel

from schemas.alerts import Severity
from services.cli.backtest import Result
from services.cli.policies import Checked
from services.common.durations import format_duration

MISSING: Any = object()
"""A value one of the two policies does not have."""

SECTIONS = (
    "obligations",
    "patterns",
    "scoring",
    "settle",
    "retention",
    "escalation",
    "group_window",
    "resolved_retention",
    "routing",
    "receivers",
)
TITLES = {
    "obligations": "obligations",
    "patterns": "patterns",
    "scoring": "risk score",
    "settle": "risk service",
    "retention": "risk service",
    "escalation": "escalation",
    "group_window": "notifications",
    "resolved_retention": "notifications",
    "routing": "routing",
    "receivers": "receivers",
}
RISK_SECTIONS = frozenset({"obligations", "patterns", "scoring", "settle", "retention"})


@dataclass(frozen=True)
class Change:
    """One difference between the policies, and how it reads."""

    section: str
    path: tuple[str, ...]
    before: Any
    after: Any
    text: str

    def to_json(self) -> dict[str, Any]:
        """Return it as JSON-ready data (durations as seconds)."""
        return {
            "section": self.section,
            "path": ".".join(self.path),
            "before": _json(self.before),
            "after": _json(self.after),
            "text": self.text,
        }


def _json(value: Any) -> Any:  # noqa: ANN401 - any policy value
    if value is MISSING:
        return None
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v) for v in value]
    return value


def _raw(value: object) -> Any:  # noqa: ANN401 - policy data of every shape
    """Return a policy, or part of one, as plain data.

    Fields go by the name the file uses, durations stay timedelta (a dump would serialise
    them to text), enums and URLs become text.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {(info.alias or name): _raw(getattr(value, name)) for name, info in fields.items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {_raw(k): _raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_raw(v) for v in value]
    if isinstance(value, AnyUrl):
        return str(value)
    return value


def normalise(checked: Checked) -> dict[str, Any]:
    """Return both services' view of a policy as plain data, defaults and effective values in."""
    risk = _raw(checked.risk)
    notify = checked.notify
    escalation = {
        severity.value: {
            "levels": _raw(ladder.levels),
            "repeat": ladder.repeat,
            # The severity's default when the file is silent: the timeout that applies.
            "ack_timeout": notify.ack_timeout(severity),
        }
        for severity, ladder in notify.escalation.items()
    }
    return {
        **{section: risk[section] for section in ("obligations", "patterns", "scoring")},
        "settle": risk["settle"],
        "retention": risk["retention"],
        "escalation": escalation,
        "group_window": notify.group_window,
        "resolved_retention": notify.resolved_retention,
        "routing": _raw(notify.routing),
        "receivers": _raw(notify.receivers),
    }


def describe(old: Checked, new: Checked) -> list[Change]:
    """Return every difference from `old` to `new`, section by section, in words."""
    before, after = normalise(old), normalise(new)
    changes: list[Change] = []
    for section in SECTIONS:
        changes.extend(_section(section, before[section], after[section]))
    return changes


def _section(section: str, old: Any, new: Any) -> Iterator[Change]:  # noqa: ANN401 - policy data
    if section == "escalation":
        for severity in sorted({*old, *new}, key=lambda s: -Severity(s).rank):
            yield from _ladder(severity, old.get(severity, MISSING), new.get(severity, MISSING))
        return
    for path, before, after in _leaves((section,), old, new):
        yield Change(section, path, before, after, _words(path, before, after))


def _leaves(
    path: tuple[str, ...], old: object, new: object
) -> Iterator[tuple[tuple[str, ...], object, object]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted({*old, *new}, key=str):
            yield from _leaves((*path, str(key)), old.get(key, MISSING), new.get(key, MISSING))
    elif old != new:
        yield path, old, new


# --- words ----------------------------------------------------------------------------


def _show(value: object) -> str:
    if value is MISSING or value is None:
        return "none"
    if isinstance(value, timedelta):
        return format_duration(value) if value else "0s"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value) or "nobody"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_show(v)}" for k, v in value.items())
    return str(value)


def _from_to(old: object, new: object) -> str:
    text = f"{_show(old)} -> {_show(new)}"
    if isinstance(old, timedelta) and isinstance(new, timedelta):
        text += " (shorter)" if new < old else " (longer)"
    return text


def _sets(old: object, new: object) -> str:
    before = set(old) if isinstance(old, list) else set()
    after = set(new) if isinstance(new, list) else set()
    parts = []
    added = sorted(after - before, key=str)
    removed = sorted(before - after, key=str)
    if added:
        parts.append("adds " + ", ".join(_show(v) for v in added))
    if removed:
        parts.append("drops " + ", ".join(_show(v) for v in removed))
    return "; ".join(parts) or f"reordered: {_show(new)}"


def _field(name: str) -> str:
    return name.replace("-", " ").replace("_", " ")


Phrase = Callable[[tuple[str, ...], object, object], str]


def _words(path: tuple[str, ...], old: object, new: object) -> str:
    section, rest = path[0], path[1:]
    # These sections' phrases say themselves what was added or removed.
    whole = section in {"obligations", "receivers", "routing"}
    if old is MISSING and not whole:
        return f"{_subject(section, rest)}: {_show(new)} (new)"
    if new is MISSING and not whole:
        return f"{_subject(section, rest)}: {_show(old)} removed"
    return _PHRASES[section](rest, old, new)


def _subject(section: str, rest: tuple[str, ...]) -> str:
    if section == "obligations":
        return f"{rest[0]}: {' '.join(_field(p) for p in rest[1:])}".rstrip(": ")
    return f"{TITLES[section]}: {' '.join(_field(p) for p in rest)}".rstrip(": ")


def _obligation(rest: tuple[str, ...], old: object, new: object) -> str:
    rule, fields = rest[0], rest[1:]
    if fields[:1] == ("windows",) and len(fields) == 2:  # noqa: PLR2004 - windows.<level>
        if old is MISSING:
            return f"{rule}: a window for {fields[1]}: {_show(new)} (new)"
        if new is MISSING:
            return f"{rule}: no window for {fields[1]} (was {_show(old)}): no obligation then"
        return f"{rule}: window for {fields[1]} {_from_to(old, new)}"
    if old is MISSING or new is MISSING:
        what = " ".join(_field(f) for f in fields)
        return f"{rule}: {what} {_show(new)} (new)" if old is MISSING else f"{rule}: {what} removed"
    if fields and fields[-1] == "holidays":
        return f"{rule}: holidays {_sets(old, new)}"
    if fields and fields[0] in {"first", "second"}:
        rule, fields = f"{rule} ({fields[0]})", fields[1:]
    return f"{rule}: {' '.join(_field(f) for f in fields)} {_from_to(old, new)}"


def _pattern(rest: tuple[str, ...], old: object, new: object) -> str:
    field = _field(rest[-1])
    if isinstance(old, list) or isinstance(new, list):
        return f"pattern {rest[0]}: {field} {_sets(old, new)}"
    return f"pattern {rest[0]}: {field} {_from_to(old, new)}"


def _routing(rest: tuple[str, ...], old: object, new: object) -> str:
    if rest[0] == "default":
        where, route = "in every area without its own", rest[1]
    else:
        area = rest[1]
        if len(rest) == 2:  # noqa: PLR2004 - a whole area's overrides
            if old is MISSING:
                return f"area {area}: routes of its own: {_show(new)}"
            return f"area {area}: its own routes removed; the default ones apply"
        where, route = f"in area {area}", rest[2]
    if old is MISSING:
        return f"route {route} ({where}): new, tells {_show(new)}"
    if new is MISSING:
        return f"route {route} ({where}): removed"
    return f"route {route} ({where}): {_sets(old, new)}"


def _receiver(rest: tuple[str, ...], old: object, new: object) -> str:
    name = rest[0]
    if len(rest) == 1:
        if isinstance(new, dict):
            return f"receiver {name}: new, {_address(new)}"
        return f"receiver {name}: removed"
    field = rest[1]
    if field == "to":
        return f"receiver {name}: email to {_sets(old, new)}"
    return f"receiver {name}: {_field(field)} {_from_to(old, new)}"


def _address(receiver: dict[str, Any]) -> str:
    if receiver.get("channel") == "email":
        return f"email to {', '.join(receiver.get('to') or [])}"
    url = receiver.get("url") or "NOTIFY_WEBHOOK_URL"
    return f"webhook {url} (secret {receiver.get('secret')})"


_PHRASES: dict[str, Phrase] = {
    "obligations": _obligation,
    "patterns": _pattern,
    "scoring": lambda rest, old, new: (
        f"risk score: {' '.join(_field(p) for p in rest)} {_from_to(old, new)}"
    ),
    "settle": lambda _rest, old, new: (
        f"an obligation overdue on arrival waits {_from_to(old, new)} for its fulfilment"
    ),
    "retention": lambda _rest, old, new: (
        f"closed obligations and seen events are kept {_from_to(old, new)}"
    ),
    "group_window": lambda _rest, old, new: (
        f"level 1 waits {_from_to(old, new)} to group the alerts of one event"
    ),
    "resolved_retention": lambda _rest, old, new: (
        f"a resolved alert leaves the alert list after {_from_to(old, new)}"
    ),
    "routing": _routing,
    "receivers": _receiver,
}


def _ladder(severity: str, old: Any, new: Any) -> Iterator[Change]:  # noqa: ANN401 - policy data
    who = f"{severity} alerts"
    if old is MISSING or new is MISSING:
        text = f"{who}: ladder {'added' if old is MISSING else 'removed'}"
        yield Change("escalation", ("escalation", severity), old, new, text)
        return
    levels_old: list[dict[str, Any]] = old["levels"]
    levels_new: list[dict[str, Any]] = new["levels"]
    for index in range(max(len(levels_old), len(levels_new))):
        number = index + 1
        path = ("escalation", severity, "levels", str(number))
        before = levels_old[index] if index < len(levels_old) else MISSING
        after = levels_new[index] if index < len(levels_new) else MISSING
        if before != after:
            yield Change("escalation", path, before, after, _level(who, number, before, after))
    for field, phrase in (
        ("repeat", "the current level is told again every {}"),
        ("ack_timeout", "an acknowledgement holds {} before the alert re-opens"),
    ):
        if old[field] != new[field]:
            text = f"{who}: " + phrase.format(_from_to(old[field], new[field]))
            yield Change(
                "escalation", ("escalation", severity, field), old[field], new[field], text
            )


def _level(who: str, number: int, before: Any, after: Any) -> str:  # noqa: ANN401 - policy data
    if before is MISSING:
        return f"{who}: level {number} added: {after['route']} after {_show(after['after'])}"
    if after is MISSING:
        return f"{who}: level {number} ({before['route']}) removed"
    parts = []
    if before["route"] != after["route"]:
        parts.append(f"goes to {after['route']} instead of {before['route']}")
    if before["after"] != after["after"]:
        sooner = "sooner" if after["after"] < before["after"] else "later"
        parts.append(f"after {_show(before['after'])} -> {_show(after['after'])} ({sooner})")
    return f"{who}: level {number} ({after['route']}) " + ", ".join(parts)


def notes(changes: Sequence[Change]) -> list[str]:
    """Return what a reviewer should know about when the changes take effect."""
    found = []
    if any(c.section in RISK_SECTIONS for c in changes):
        found.append(
            "Risk applies windows, severities and patterns to what it evaluates after it "
            "restarts with the new file; obligations already open keep their due time and "
            "severity."
        )
    if any(c.section not in RISK_SECTIONS for c in changes):
        found.append(
            "Escalation, routing and receivers apply to alerts raised after notify restarts "
            "with the new file; alerts already raised keep the chain they were raised with."
        )
    return found


# --- the backtest of both -------------------------------------------------------------


@dataclass(frozen=True)
class RuleChange:
    """What one rule raises under each policy, on the same recorded events."""

    rule: str
    old: int
    new: int
    only_old: int
    only_new: int

    @property
    def change(self) -> int:
        """Return how many more (or fewer) alerts the new policy raises."""
        return self.new - self.old

    def to_json(self) -> dict[str, Any]:
        """Return it as JSON-ready data."""
        return {
            "rule": self.rule,
            "old": self.old,
            "new": self.new,
            "change": self.change,
            "only_old": self.only_old,
            "only_new": self.only_new,
        }


def alert_changes(old: Result, new: Result) -> list[RuleChange]:
    """Return, per rule and in total, the alerts each policy raised from the same events."""
    rules = sorted({*old.rules, *new.rules})
    found = []
    for rule in rules:
        ids_old = {a for a, alert in old.alerts.items() if alert.rule == rule}
        ids_new = {a for a, alert in new.alerts.items() if alert.rule == rule}
        found.append(
            RuleChange(
                rule=rule,
                old=old.rules[rule].alerts if rule in old.rules else 0,
                new=new.rules[rule].alerts if rule in new.rules else 0,
                only_old=len(ids_old - ids_new),
                only_new=len(ids_new - ids_old),
            )
        )
    found.append(
        RuleChange(
            rule="(all)",
            old=sum(r.old for r in found),
            new=sum(r.new for r in found),
            only_old=sum(r.only_old for r in found),
            only_new=sum(r.only_new for r in found),
        )
    )
    return found
