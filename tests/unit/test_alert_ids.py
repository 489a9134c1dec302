"""Alert ids are keyed with the deployment's secret: stable for one secret, unlinkable without.

The secret comes from `RISK_ALERT_ID_SECRET`; only development mode has a default.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.common.environment import UnsafeConfiguration
from services.risk.engine import check, evaluate
from services.risk.policy import DEVELOPMENT_ALERT_KEY, RiskPolicy, load_policy
from services.risk.records import Raised as AlertRaised
from services.risk.settings import RiskSettings
from services.risk.state import SubjectState
from tests.fixtures.events import T0, incident

POLICY_FILE = Path(__file__).resolve().parents[2] / "policy" / "default.yaml"
SECRET = b"a deployment secret of at least 32 bytes!"


def alert_ids(policy: RiskPolicy) -> list[str]:
    """Run one overdue incident through the engine and return the alert ids raised."""
    state = SubjectState(kind="child", id="C-1")
    effects = evaluate(state, incident(T0 - timedelta(days=10)), T0, policy).effects
    effects += check(state, T0 + policy.settle, policy).effects
    ids = [e.alert_id for e in effects if isinstance(e, AlertRaised)]
    assert ids
    return ids


def test_same_secret_same_ids_across_restarts() -> None:
    # Two loads of the policy stand for two processes: nothing but the secret is shared.
    first = alert_ids(load_policy(POLICY_FILE, alert_key=SECRET))
    second = alert_ids(load_policy(POLICY_FILE, alert_key=SECRET))
    assert first == second


def test_another_secret_gives_other_ids() -> None:
    ours = alert_ids(load_policy(POLICY_FILE, alert_key=SECRET))
    theirs = alert_ids(load_policy(POLICY_FILE, alert_key=b"another deployment's secret!!!!!"))
    # Someone holding the child id but not the secret computes other ids: no link.
    assert not set(ours) & set(theirs)


def test_the_policy_file_cannot_set_the_secret(tmp_path: Path) -> None:
    text = POLICY_FILE.read_text() + "\n_alert_key: chosen-by-the-file\nalert_key: also\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert load_policy(path).alert_key == DEVELOPMENT_ALERT_KEY


def settings(**values: object) -> RiskSettings:
    return RiskSettings.model_validate(values)


def test_outside_development_the_secret_is_required_and_not_the_default() -> None:
    with pytest.raises(UnsafeConfiguration, match="RISK_ALERT_ID_SECRET is not set"):
        settings().alert_key(development=False)
    with pytest.raises(UnsafeConfiguration, match="development secret or shorter"):
        settings(alert_id_secret=DEVELOPMENT_ALERT_KEY.decode()).alert_key(development=False)
    with pytest.raises(UnsafeConfiguration, match="shorter than 32"):
        settings(alert_id_secret="short").alert_key(development=False)
    assert settings(alert_id_secret=SECRET.decode()).alert_key(development=False) == SECRET
    assert settings().alert_key(development=True) == DEVELOPMENT_ALERT_KEY
