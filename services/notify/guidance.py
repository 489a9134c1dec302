"""What to do about an alert, per rule: the policy's `guidance` section.

Each rule's guidance says what the person told should do, whom to call (as roles: a
role outlives the person in it, and a number in a policy file goes stale and leaks),
and the statutory basis. Messages carry it; the desk shows it beside the alert from
the same policy (`guidance_for`).

Phone numbers and email addresses are refused in guidance: contact details belong to
the force's directory, which is kept current, not to a file copied into deployments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.alerts import Rule

Text = Annotated[str, StringConstraints(min_length=1, max_length=800, strip_whitespace=True)]
Role = Annotated[str, StringConstraints(min_length=1, max_length=120, strip_whitespace=True)]

# Seven or more digits, however spaced or punctuated: a phone number, not a statute's
# section (`s.38(6)`) or a year.
_PHONE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")


class Guidance(BaseModel):
    """One rule's guidance: the action, the roles to call, the statutory basis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Text = Field(description="what the person told should do, in a sentence or two")
    call: tuple[Role, ...] = Field(
        min_length=1, max_length=6, description="whom to call, as roles (never a person's number)"
    )
    basis: Text = Field(description="the statutory basis: the act, code or guidance it follows")

    @model_validator(mode="after")
    def _no_contact_details(self) -> Self:
        for text in (self.action, self.basis, *self.call):
            if _PHONE.search(text) or _EMAIL.search(text):
                raise ValueError(
                    "guidance names roles, not phone numbers or email addresses: keep contact "
                    "details in the force's directory"
                )
        return self

    def as_json(self) -> dict[str, object]:
        """Return the guidance as messages carry it."""
        return {"action": self.action, "call": list(self.call), "basis": self.basis}


def guidance_for(guidance: Mapping[str, Guidance], rule: str) -> Guidance | None:
    """Return the guidance for `rule`, or None when the policy has none for it."""
    return guidance.get(rule)


def rules_without_guidance(guidance: Mapping[str, Guidance]) -> list[str]:
    """Return the rules this release raises that the policy gives no guidance for."""
    return sorted(rule.value for rule in Rule if rule.value not in guidance)
