"""Entry point of the risk service: `safeguard-risk`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.logging import configure_logging
from services.common.streams import run_worker
from services.risk.app import create_app
from services.risk.policy import load_policy
from services.risk.settings import RiskSettings


def main() -> None:
    """Start the risk worker in the foreground."""
    settings = RiskSettings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    service = create_app(
        settings,
        load_policy(settings.policy_file),
        SystemClock(),
        CollectorRegistry(),
        Authenticator.from_file(settings.tokens_file),
    )
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
