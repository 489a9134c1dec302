"""Entry point of the risk service: `safeguard-risk`."""

from __future__ import annotations

from services.common.clock import SystemClock
from services.common.environment import UnsafeConfiguration, load_settings
from services.common.logging import configure_logging
from services.common.metrics import record_policy, service_registry
from services.common.streams import run_worker
from services.risk.app import create_app
from services.risk.policy import load_policy
from services.risk.producers import ProducerConfigError
from services.risk.settings import RiskSettings


def main() -> None:
    """Start the risk worker in the foreground."""
    settings = load_settings(RiskSettings, "risk")
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        policy = load_policy(settings.policy_file, alert_key=settings.alert_key())
        producers = settings.direct_producers()
    except (UnsafeConfiguration, ProducerConfigError) as exc:
        # Said plainly on stderr, exit status 1: the operator must read why.
        raise SystemExit(f"safeguard-risk: {exc}") from None
    registry = service_registry()
    record_policy(registry, settings.policy_file)
    service = create_app(settings, policy, SystemClock(), registry, producers)
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
