"""The notify policy: escalation chains per severity, routing by area, receivers.

Read from the same policy file as the risk service (its `escalation`, `routing` and
`receivers` sections). `chain_for` resolves the chain an alert follows at raise time;
the result is stored with the alert, so a policy change affects new alerts only.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.alerts import Severity
from schemas.notifications import Channel, ReceiverName
from services.common.durations import Duration
from services.common.policy_file import load_policy_file

RouteName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
SecretName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
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


class Receiver(_Strict):
    """How a receiver is reached: a webhook (signed) or email addresses."""

    channel: Channel
    url: AnyHttpUrl | None = None
    secret: SecretName | None = None
    to: list[EmailAddress] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits_channel(self) -> Self:
        if self.channel is Channel.WEBHOOK:
            if self.secret is None:
                raise ValueError("a webhook receiver needs `secret` (the name of its signing key)")
            if self.to:
                raise ValueError("`to` is for email receivers")
        else:
            if not self.to:
                raise ValueError("an email receiver needs `to`")
            if self.url is not None or self.secret is not None:
                raise ValueError("`url` and `secret` are for webhook receivers")
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
        return self

    def ack_timeout(self, severity: Severity) -> timedelta:
        """Return how long an acknowledgement of `severity` holds without the work done."""
        return self.escalation[severity].ack_timeout or DEFAULT_ACK_TIMEOUTS[severity]

    def secret_names(self) -> set[str]:
        """Return the names of every webhook signing secret the policy refers to."""
        return {r.secret for r in self.receivers.values() if r.secret is not None}

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


def chain_for(
    policy: NotifyPolicy, severity: Severity, area: str | None, *, default_url: str | None
) -> Chain:
    """Resolve the chain for an alert of `severity` in `area`, recipients included."""
    ladder = policy.escalation[severity]
    overrides = policy.routing.areas.get(area, {}) if area else {}
    levels = []
    for number, level in enumerate(ladder.levels, start=1):
        names = overrides.get(level.route, policy.routing.default[level.route])
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
