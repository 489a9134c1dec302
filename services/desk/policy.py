"""What the desk takes from the policy file notify uses: the time zone, guidance, the rota.

The desk reads the same file (`DESK_POLICY_FILE`, validated by notify's own loader), so
the console shows times in the zone messages use, the guidance messages carry, and who
the rota has on duty as notify would resolve it. Without a file the desk still serves
every page: times in the policy's default zone (Europe/London), no guidance, and no
"on duty" panel (the page says why).

Calendar rotas are iCalendar feeds that notify fetches with their secrets; the desk does
not fetch them. For a route decided by a calendar the desk says so, and says who notify
tells when the calendar names nobody (dated cover, weekly shifts, then the routing
table), rather than guess who the feed names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from services.notify.guidance import Guidance
from services.notify.policy import NotifyPolicy, load_policy, on_duty_now

DEFAULT_ZONE = ZoneInfo("Europe/London")
DEFAULT_AREA = "(other areas)"


@dataclass(frozen=True)
class RouteOnDuty:
    """Who one route reaches now in one area, where that comes from, and until when."""

    route: str
    receivers: tuple[str, ...]
    source: str
    until: datetime | None
    calendar: bool
    """The route's rota has a calendar feed the desk does not read."""


@dataclass(frozen=True)
class AreaOnDuty:
    """Every route of the ladders in one area (None: areas without their own routing)."""

    area: str | None
    routes: tuple[RouteOnDuty, ...]


@dataclass(frozen=True)
class DeskPolicy:
    """The policy's parts the pages show; `policy` is None when no file was given."""

    policy: NotifyPolicy | None = None

    @classmethod
    def load(cls, path: Path | None) -> DeskPolicy:
        """Load the policy file (its errors name the field), or none."""
        return cls(None if path is None else load_policy(path))

    @property
    def zone(self) -> ZoneInfo:
        """Return the deployment's time zone."""
        return self.policy.zone if self.policy is not None else DEFAULT_ZONE

    def guidance(self, rule: str) -> Guidance | None:
        """Return the rule's guidance, or None (no policy file, or none for the rule)."""
        return None if self.policy is None else self.policy.guidance_for(rule)

    def areas(self, visible: frozenset[str] | None) -> list[str | None]:
        """Return the areas to show who is on duty in: the person's, else the policy's.

        None stands for every area without routing or a rota of its own.
        """
        if self.policy is None:
            return []
        areas: list[str | None] = []
        if visible is None:
            areas.append(None)
            visible = frozenset(self.policy.routing.areas) | frozenset(self.policy.rota.areas)
        areas.extend(sorted(visible))
        return areas

    def on_duty(self, visible: frozenset[str] | None, at: datetime) -> list[AreaOnDuty]:
        """Return who each route reaches now, per area the person may see."""
        policy = self.policy
        if policy is None:
            return []
        shown = []
        for area in self.areas(visible):
            routes = []
            for route, duty in on_duty_now(policy, area, at).items():
                rota = policy.rota.for_route(area, route)
                routes.append(
                    RouteOnDuty(
                        route=route,
                        receivers=duty.receivers,
                        source=duty.source,
                        until=duty.until,
                        calendar=rota is not None and rota.calendar is not None,
                    )
                )
            shown.append(AreaOnDuty(area=area, routes=tuple(routes)))
        return shown
