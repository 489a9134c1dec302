"""Outside development mode every service refuses development-only settings, and says why.

Each service is started as a real process with `SAFEGUARD_ENV` removed; it must exit
non-zero before touching the broker (none is configured to answer) with a message that
names the problem. The same services start in development mode elsewhere in the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.stack import DEV_TOKENS_FILE, REPO
from services.common.environment import ENV_VARIABLE
from tests.fixtures.tokens import TokenSet

pytestmark = pytest.mark.integration

# Nothing listens there: a service that got past its checks would hang or fail later.
NO_BROKER = "127.0.0.1:9"
GOOD_SECRET = "a-production-alert-id-secret-of-32-bytes-or-more"


def start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != ENV_VARIABLE}
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", f"services.{service}.main"],
        env=base | env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings(service: str, tokens: Path, **extra: str) -> dict[str, str]:
    prefix = service.upper() + "_"
    env = {
        f"{prefix}KAFKA__BOOTSTRAP_SERVERS": NO_BROKER,
        f"{prefix}LOG_JSON": "true",
    }
    if service in {"ingest", "desk"}:  # the services people and systems call
        env[f"{prefix}TOKENS_FILE"] = str(tokens)
    if service == "desk":
        env[f"{prefix}DATABASE_URL"] = f"postgresql://safeguard@{NO_BROKER}/safeguard"
        # People's sign-in, so that the desk gets as far as its tokens.
        env |= {
            f"{prefix}OIDC__ISSUER": "https://id.example.invalid",
            f"{prefix}OIDC__CLIENT_ID": "safeguard-desk",
            f"{prefix}OIDC__CLIENT_SECRET": "a-client-secret",
            f"{prefix}OIDC__REDIRECT_URL": "https://desk.example.invalid/console/sign-in/callback",
            f"{prefix}OIDC__GROUP_ROLES": '{"duty-managers": ["read"]}',
        }
    if service == "risk":
        env[f"{prefix}ALERT_ID_SECRET"] = GOOD_SECRET
    if service == "notify":
        env[f"{prefix}WEBHOOK_URL"] = "https://desk.example.invalid/hook"
        env[f"{prefix}WEBHOOK_SECRETS__DUTY_DESK"] = "a-desk-secret-of-over-128-bits"
    return env | {f"{prefix}{k}": v for k, v in extra.items()}


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result.stderr[-2000:]
    assert "refusing to start" in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr  # said plainly, not as a crash


@pytest.mark.parametrize("service", ["ingest", "desk"])
def test_the_development_token_file_is_refused(service: str) -> None:
    result = start(service, settings(service, DEV_TOKENS_FILE))
    refused(
        result,
        "published development token",
        "may send for any source ('*')",
        f"{ENV_VARIABLE}=development",
    )


def test_a_star_source_is_refused(tmp_path: Path) -> None:
    tokens = TokenSet.matrix().add("anything", roles=[], sources=["*"])
    result = start("ingest", settings("ingest", tokens.write(tmp_path / "t.yaml")))
    refused(result, "token 'anything' may send for any source")


def test_risk_needs_its_own_alert_id_secret(tmp_path: Path) -> None:
    tokens = TokenSet.matrix().write(tmp_path / "t.yaml")
    env = settings("risk", tokens)
    del env["RISK_ALERT_ID_SECRET"]
    refused(start("risk", env), "RISK_ALERT_ID_SECRET is not set")
    short = settings("risk", tokens, ALERT_ID_SECRET="too-short")
    refused(start("risk", short), "RISK_ALERT_ID_SECRET")


def test_notify_needs_https_receivers(tmp_path: Path) -> None:
    tokens = TokenSet.matrix().write(tmp_path / "t.yaml")
    env = settings("notify", tokens, WEBHOOK_URL="http://desk.example.invalid/hook")
    refused(start("notify", env), "must be https://", "http://desk.example.invalid")


@pytest.mark.parametrize("secret", ["", "desk-secret", "safeguard-dev-webhook-secret"])
def test_notify_refuses_an_empty_short_or_published_webhook_secret(
    tmp_path: Path, secret: str
) -> None:
    tokens = TokenSet.matrix().write(tmp_path / "t.yaml")
    env = settings("notify", tokens, WEBHOOK_SECRETS__DUTY_DESK=secret)
    refused(start("notify", env), "NOTIFY_WEBHOOK_SECRETS__DUTY_DESK")


def test_notify_refuses_smtp_login_without_tls(tmp_path: Path) -> None:
    tokens = TokenSet.matrix().write(tmp_path / "t.yaml")
    env = settings(
        "notify",
        tokens,
        SMTP__USERNAME="relay",
        SMTP__PASSWORD="hunter2-relay-password",
        SMTP__SECURITY="none",
    )
    result = start("notify", env)
    assert result.returncode != 0
    assert "SMTP login needs TLS" in result.stderr
    assert "hunter2" not in result.stderr
