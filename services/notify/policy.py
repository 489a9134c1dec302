"""The notify policy: escalation chains per severity, routing by area, receivers.

Read from the same policy file as the risk service (its `escalation`, `routing`,
`receivers`, `rota`, `guidance` and `timezone` sections). `chain_for` resolves the chain
an alert follows at raise time, who is on duty then included; the result is stored
with the alert, so a policy or rota change affects new alerts only.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.alerts import Severity
from schemas.notifications import Channel, ReceiverName
from services.common.durations import Duration
from services.common.policy_file import load_policy_file
from services.notify.guidance import Guidance
from services.notify.rota import Calendars, OnDuty, Rota, RouteName, SecretName, on_duty

RuleKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s<>,;]{1,64}@[^@\s<>,;]{1,255}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelPolicy(_Strict):
    """One rung of the ladder: which route it reaches, how long after the raise."""

    route: RouteName
    after: Duration = timedelta(0)


# An acknowledgement is not the work done: an acknowledged alert whose obligation is
# still unmet after this long is open again. Per severity when the file is
# silent; `ack_timeout: null` in the file is not allowed (there is always a timeout).
DEFAULT_ACK_TIMEOUTS = {
    Severity.CRITICAL: timedelta(hours=1),
    Severity.HIGH: timedelta(hours=4),
    Severity.MEDIUM: timedelta(hours=24),
}
DEFAULT_GROUP_WINDOW = timedelta(seconds=30)


class SeverityPolicy(_Strict):
    """The ladder for one severity."""

    levels: list[LevelPolicy] = Field(min_length=1, max_length=20)
    repeat: Duration | None = None
    ack_timeout: Duration | None = Field(
        default=None,
        description="how long an acknowledged alert may stay unresolved before it is open "
        "again; absent: the severity's default (critical 1h, high 4h, medium 24h)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        afters = [level.after for level in self.levels]
        if afters[0] != timedelta(0):
            raise ValueError("level 1 goes out when the alert is raised: its `after` must be 0")
        if any(later <= earlier for earlier, later in itertools.pairwise(afters)):
            raise ValueError("each level's `after` must be later than the one before")
        if self.repeat is not None and self.repeat <= timedelta(0):
            raise ValueError("`repeat` must be positive")
        if self.ack_timeout is not None and self.ack_timeout <= timedelta(0):
            raise ValueError("`ack_timeout` must be positive")
        return self


# What a receiver's `secret` names, per channel, and where its value is set.
SECRET_MEANING = {
    Channel.WEBHOOK: "the name of its signing key (NOTIFY_WEBHOOK_SECRETS__<NAME>)",
    Channel.TEAMS: "the name of its Workflows URL (NOTIFY_TEAMS_URLS__<NAME>)",
    Channel.PAGERDUTY: "the name of its routing key (NOTIFY_PAGERDUTY_KEYS__<NAME>)",
}


class Receiver(_Strict):
    """How a receiver is reached: a signed webhook, email addresses, Teams or PagerDuty.

    Teams' Workflows URL and PagerDuty's routing key are credentials: the policy names
    them (`secret`) and the environment holds them, like a webhook's signing key.
    """

    channel: Channel
    url: AnyHttpUrl | None = None
    secret: SecretName | None = None
    to: list[EmailAddress] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits_channel(self) -> Self:
        if self.channel is Channel.EMAIL:
            if not self.to:
                raise ValueError("an email receiver needs `to`")
            if self.url is not None or self.secret is not None:
                raise ValueError("`url` and `secret` are not for email receivers")
            return self
        if self.secret is None:
            raise ValueError(
                f"a {self.channel.value} receiver needs `secret`: {SECRET_MEANING[self.channel]}"
            )
        if self.to:
            raise ValueError("`to` is for email receivers")
        if self.channel is not Channel.WEBHOOK and self.url is not None:
            raise ValueError(
                f"a {self.channel.value} receiver's address is a secret: name it with `secret`"
            )
        return self


class Routing(_Strict):
    """Route name -> receiver names, by default and per area."""

    default: dict[RouteName, list[ReceiverName]]
    areas: dict[str, dict[RouteName, list[ReceiverName]]] = Field(default_factory=dict)


class NotifyPolicy(BaseModel):
    """Everything the notify service takes from the policy file."""

    # The file also holds the risk service's sections, which it validates itself.
    model_config = ConfigDict(extra="ignore", frozen=True)

    escalation: dict[Severity, SeverityPolicy]
    routing: Routing
    receivers: dict[ReceiverName, Receiver]
    resolved_retention: Duration = Field(
        default=timedelta(days=30),
        description="how long a resolved alert stays in the table (and the alert API); its "
        "history stays on the notifications topic",
    )
    group_window: Duration = Field(
        default=DEFAULT_GROUP_WINDOW,
        description="level 1 waits this long after the raise, so that the alerts one "
        "trigger event raises together go out as one message per receiver",
    )
    timezone: str = Field(
        default="Europe/London",
        description="the deployment's time zone: local times in messages, rota shifts",
    )
    guidance: dict[RuleKey, Guidance] = Field(
        default_factory=dict,
        description="per rule id: what to do, whom to call (roles), the statutory basis; "
        "guidance for a rule this release does not raise is kept and unused",
    )
    rota: Rota = Field(default_factory=Rota, description="who is on duty, per route and area")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Europe/London)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """Return the deployment's time zone."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        missing_severities = set(Severity) - set(self.escalation)
        if missing_severities:
            raise ValueError(f"escalation lacks severities: {sorted(missing_severities)}")
        for severity, ladder in self.escalation.items():
            for level in ladder.levels:
                if level.route not in self.routing.default:
                    raise ValueError(
                        f"escalation.{severity}: route {level.route!r} is not in routing.default"
                    )
        tables = [self.routing.default, *self.routing.areas.values()]
        for table in tables:
            for route, names in table.items():
                unknown = [name for name in names if name not in self.receivers]
                if unknown:
                    raise ValueError(f"route {route!r} names unknown receivers: {unknown}")
        self._rota_consistent()
        return self

    def _rota_consistent(self) -> None:
        for area, route, rota in self.rota.entries():
            where = f"rota.{area or 'default'}.{route}"
            if route not in self.routing.default:
                raise ValueError(f"{where}: route {route!r} is not in routing.default")
            unknown = sorted(rota.receiver_names() - set(self.receivers))
            if unknown:
                raise ValueError(f"{where} names unknown receivers: {unknown}")

    def ack_timeout(self, severity: Severity) -> timedelta:
        """Return how long an acknowledgement of `severity` holds without the work done."""
        return self.escalation[severity].ack_timeout or DEFAULT_ACK_TIMEOUTS[severity]

    def secret_names(self, channel: Channel = Channel.WEBHOOK) -> set[str]:
        """Return the names of the secrets of `channel`'s receivers (webhook signing keys).

        For Teams, the names of their Workflows URLs; for PagerDuty, of routing keys.
        """
        return {
            r.secret
            for r in self.receivers.values()
            if r.secret is not None and r.channel is channel
        }

    def calendar_secret_names(self) -> set[str]:
        """Return the names of rota calendar URLs kept in the environment."""
        return {c.secret for c in self.rota.calendars().values() if c.secret is not None}

    def guidance_for(self, rule: str) -> Guidance | None:
        """Return the guidance for `rule`, or None when the policy has none."""
        return self.guidance.get(rule)

    def receivers_without_url(self) -> list[str]:
        """Return the webhook receivers that rely on the default webhook URL."""
        return sorted(
            name
            for name, r in self.receivers.items()
            if r.channel is Channel.WEBHOOK and r.url is None
        )


class Recipient(_Strict):
    """A receiver as snapshotted into an alert's chain, with its address resolved."""

    name: ReceiverName
    channel: Channel
    url: str | None = None
    secret: SecretName | None = None
    to: tuple[str, ...] = ()


class ChainLevel(_Strict):
    """One rung of an alert's own ladder."""

    level: int = Field(ge=1)
    route: RouteName
    after: Duration
    recipients: tuple[Recipient, ...]


class Chain(_Strict):
    """The ladder an alert follows, fixed when it was raised."""

    levels: tuple[ChainLevel, ...]
    repeat: Duration | None = None
    ack_timeout: Duration | None = Field(
        default=None, description="None in alerts raised before acknowledgements timed out"
    )

    def at(self, level: int) -> ChainLevel | None:
        """Return level `level` (1-based), or None past the top."""
        return self.levels[level - 1] if 1 <= level <= len(self.levels) else None


def route_receivers(policy: NotifyPolicy, area: str | None, route: str) -> list[str]:
    """Return the routing table's receivers of `route` in `area` (no rota)."""
    overrides = policy.routing.areas.get(area, {}) if area else {}
    return overrides.get(route, policy.routing.default[route])


def on_duty_now(
    policy: NotifyPolicy,
    area: str | None,
    at: datetime,
    calendars: Calendars | None = None,
) -> dict[str, OnDuty]:
    """Return, for each route of the ladders, who it reaches in `area` at `at`.

    What the desk shows as "on duty now", and what `chain_for` snapshots at a raise.
    `calendars` are the rota feeds' shifts as last fetched (none: weekly shifts only).
    """
    routes = dict.fromkeys(
        level.route for ladder in policy.escalation.values() for level in ladder.levels
    )
    return {
        route: on_duty(
            policy.rota.for_route(area, route),
            route_receivers(policy, area, route),
            at=at,
            zone=policy.zone,
            calendars=calendars or {},
            known=policy.receivers,
        )
        for route in routes
    }


def chain_for(  # noqa: PLR0913 - the alert's severity and area, and when it was raised
    policy: NotifyPolicy,
    severity: Severity,
    area: str | None,
    *,
    default_url: str | None,
    at: datetime | None = None,
    calendars: Calendars | None = None,
) -> Chain:
    """Resolve the chain for an alert of `severity` in `area`, recipients included.

    With `at` (the raise), the rota decides the routes it covers: who is on duty then,
    from `calendars` (the feeds' shifts as last fetched) or the weekly shifts. Without
    it, the routing table alone.
    """
    ladder = policy.escalation[severity]
    levels = []
    for number, level in enumerate(ladder.levels, start=1):
        names = route_receivers(policy, area, level.route)
        if at is not None:
            names = list(
                on_duty(
                    policy.rota.for_route(area, level.route),
                    names,
                    at=at,
                    zone=policy.zone,
                    calendars=calendars or {},
                    known=policy.receivers,
                ).receivers
            )
        recipients = []
        for name in dict.fromkeys(names):  # a receiver named twice is told once
            receiver = policy.receivers[name]
            url = str(receiver.url) if receiver.url is not None else default_url
            recipients.append(
                Recipient(
                    name=name,
                    channel=receiver.channel,
                    url=url if receiver.channel is Channel.WEBHOOK else None,
                    secret=receiver.secret,
                    to=tuple(receiver.to),
                )
            )
        levels.append(
            ChainLevel(
                level=number, route=level.route, after=level.after, recipients=tuple(recipients)
            )
        )
    return Chain(
        levels=tuple(levels), repeat=ladder.repeat, ack_timeout=policy.ack_timeout(severity)
    )


def load_policy(path: Path) -> NotifyPolicy:
    """Read and validate the policy file, naming the offending field on error."""
    return load_policy_file(path, NotifyPolicy)
