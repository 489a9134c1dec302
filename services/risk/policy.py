"""The risk policy: obligation windows and severities, from one YAML file operators own."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.alerts import Severity
from services.common.durations import Duration


class PolicyError(ValueError):
    """The policy file is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SocialCareReferralPolicy(_Strict):
    """`social-care-referral`: referral to children's social care or the MASH."""

    window: Duration
    window_when_dash_high: Duration
    severity: Severity = Severity.HIGH


class ObligationsPolicy(_Strict):
    """Windows of the deadline rules (CONTRACT.md section 3)."""

    social_care_referral: SocialCareReferralPolicy

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=lambda n: n.replace("_", "-")
    )


class RiskPolicy(BaseModel):
    """Everything the risk service takes from the policy file."""

    # The file also holds the notify service's sections, which it validates itself.
    model_config = ConfigDict(extra="ignore", frozen=True)

    obligations: ObligationsPolicy


def load_policy(path: Path) -> RiskPolicy:
    """Read and validate the policy file, naming the offending field on error."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
    try:
        return RiskPolicy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy file {path}: {exc}") from exc
