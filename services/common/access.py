"""Token scopes on the read and act pages of risk and notify: who may see or act on what.

Pure functions the Faust pages call; they hold no HTTP types, so the pages build their
responses from `Refusal` (`view.json(refusal.body, status=refusal.status,
headers=refusal.headers)`). The order of checks, and what each refusal names:

1. no valid token: 401 `unauthenticated`;
2. the token lacks the route's role: 403 `forbidden`, `errors` `[{"loc": "(root)"}]`
   naming the role;
3. the alert's (or child's) area is outside the token's `areas`: 403 `forbidden`,
   `errors` `[{"loc": "area"}]` naming the area. An alert without an area is visible to
   every token with the role (Principal.may_see_area).

Lists are filtered instead (`visible`): a token sees the alerts of its areas and those
without an area, and the list says nothing about the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from schemas.audit import AuditAction
from services.common.auth import Principal, Role

T = TypeVar("T")

ROOT = "(root)"


@dataclass(frozen=True)
class Refusal:
    """A 401 or 403 to answer instead of the page: status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def unauthenticated() -> Refusal:
    """Return the 401 for a missing or unknown token."""
    return Refusal(
        401,
        {"error": "unauthenticated", "message": "a valid bearer token is required"},
        {"WWW-Authenticate": 'Bearer realm="safeguard"'},
    )


def require(principal: Principal | None, role: Role, area: str | None = None) -> Refusal | None:
    """Return the refusal for this caller, role and area, or None when it may go ahead.

    Pass the area of the alert (or child) once it is loaded; before that, `area=None`
    checks the token and the role only (an unknown alert is then a 404 as usual).
    """
    if principal is None:
        return unauthenticated()
    if not principal.has(role):
        return Refusal(
            403,
            {
                "error": "forbidden",
                "message": f"the token lacks the {role.value!r} role",
                "errors": [{"loc": ROOT, "msg": f"this token may not {_VERB[role]}"}],
            },
        )
    if not principal.may_see_area(area):
        # Area codes are the partnership's routing codes, not personal data: named.
        return Refusal(
            403,
            {
                "error": "forbidden",
                "message": f"the token's areas do not include {area!r}",
                "errors": [{"loc": "area", "msg": f"this token may not act on area {area}"}],
            },
        )
    return None


def visible(
    principal: Principal, items: Iterable[T], area_of: Callable[[T], str | None]
) -> list[T]:
    """Keep the items (alerts, their summaries) whose area this caller may see."""
    return [item for item in items if principal.may_see_area(area_of(item))]


def audit_action(role: Role) -> AuditAction:
    """Return the audit action of an alert page acting with `role` (notes are apart)."""
    return _AUDITED[role]


_VERB = {
    Role.SEND: "send events",
    Role.READ: "read alerts or children",
    Role.ACKNOWLEDGE: "acknowledge alerts",
    Role.RESOLVE: "resolve alerts",
}

_AUDITED = {
    Role.READ: AuditAction.ALERT_VIEWED,
    Role.ACKNOWLEDGE: AuditAction.ALERT_ACKNOWLEDGED,
    Role.RESOLVE: AuditAction.ALERT_RESOLVED,
}
