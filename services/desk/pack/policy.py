"""What the desk reads from the policy file: the assurance section, and who the leads are.

`assurance` (docs/contract.md section 3): the on-time floor per rule, how many judged
obligations a floor needs, how long each source may be silent, the caseload threshold
per offender manager, and when the weekly digest and the monthly pack go out and to
which route. Recipients are the email receivers the policy's routing table gives that
route in each area (`strategic-lead` by default), read with notify's own loader, so the
two services cannot read the table differently. The policy's version is the SHA-256 of
the file: what the pack's provenance names.
"""

from __future__ import annotations

import hashlib
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.notifications import Channel
from services.common.durations import Duration
from services.common.policy_file import load_policy_file
from services.notify.policy import NotifyPolicy

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
Percent = Annotated[float, Field(ge=0, le=100)]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True
    )


class DigestSchedule(_Strict):
    """The weekly digest: on which day, at what local time, to which route's receivers."""

    weekday: Weekday = "monday"
    at: time = time(7, 0)
    route: str = "strategic-lead"


class PackSchedule(_Strict):
    """The monthly pack of the month before: the day of the month, local time, route."""

    day: int = Field(default=3, ge=1, le=28)
    at: time = time(7, 0)
    route: str = "strategic-lead"


class Assurance(_Strict):
    """The policy's `assurance` section, with its defaults."""

    on_time_floor: dict[str, Percent] = Field(
        default_factory=lambda: {"default": 80.0},
        description="per rule id, `default` for the rest: % met on time below which it alerts",
    )
    min_judged: int = Field(default=10, ge=1)
    silent_after: dict[str, Duration] = Field(
        default_factory=lambda: {"default": timedelta(days=2)},
        description="per source, `default` for the rest: no event for longer is silence",
    )
    caseload_threshold: int = Field(default=40, ge=1)
    digest: DigestSchedule = Field(default_factory=DigestSchedule)
    pack: PackSchedule = Field(default_factory=PackSchedule)

    def floor(self, rule: str) -> float:
        """Return the on-time floor of `rule`, in percent."""
        return self.on_time_floor.get(rule, self.on_time_floor.get("default", 80.0))

    def silence(self, source: str) -> timedelta:
        """Return how long `source` may go without events."""
        return self.silent_after.get(source, self.silent_after.get("default", timedelta(days=2)))


class _AssuranceFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    assurance: Assurance = Field(default_factory=Assurance)


class AssurancePolicy:
    """The assurance section, the routing table and receivers, and the file's version."""

    def __init__(self, assurance: Assurance, notify: NotifyPolicy | None, version: str) -> None:
        self.assurance = assurance
        self.notify = notify
        self.version = version

    @classmethod
    def load(cls, path: Path | None) -> AssurancePolicy:
        """Read the policy file (None: the defaults, nobody to send to)."""
        if path is None:
            return cls(Assurance(), None, "defaults")
        version = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(
            load_policy_file(path, _AssuranceFile).assurance,
            load_policy_file(path, NotifyPolicy),
            version,
        )

    def timezone(self) -> str:
        """Return the deployment's time zone (schedules are local times in it)."""
        return self.notify.timezone if self.notify is not None else "Europe/London"

    def areas(self) -> list[str]:
        """Return the areas the routing table names."""
        return sorted(self.notify.routing.areas) if self.notify is not None else []

    def recipients(self, route: str, area: str) -> list[str]:
        """Return the email addresses `route` reaches in `area` (its email receivers)."""
        if self.notify is None:
            return []
        routing = self.notify.routing
        names = routing.areas.get(area, {}).get(route) or routing.default.get(route, [])
        addresses: list[str] = []
        for name in names:
            receiver = self.notify.receivers.get(name)
            if receiver is not None and receiver.channel is Channel.EMAIL:
                addresses.extend(str(a) for a in receiver.to)
        return sorted(set(addresses))
