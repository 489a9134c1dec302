"""Entry point of the notify service: `safeguard-notify`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.logging import configure_logging
from services.common.streams import run_worker
from services.notify.app import NotifyService
from services.notify.channels import EmailChannel, WebhookChannel
from services.notify.delivery import Deliverer
from services.notify.metrics import NotifyMetrics
from services.notify.policy import load_policy
from services.notify.retry import Backoff
from services.notify.settings import NotifySettings


def create_service(
    settings: NotifySettings, clock: SystemClock, registry: CollectorRegistry
) -> NotifyService:
    """Wire the notify service from its settings."""
    metrics = NotifyMetrics(registry)
    d = settings.delivery
    deliverer = Deliverer(
        webhook=WebhookChannel(clock),
        email=EmailChannel(settings.smtp),
        secrets={
            name: secret.get_secret_value().encode()
            for name, secret in settings.webhook_secrets.items()
        },
        backoff=Backoff(d.initial_backoff_seconds, d.max_backoff_seconds),
        clock=clock,
        metrics=metrics,
        attempt_timeout=d.attempt_timeout_seconds,
    )
    return NotifyService(
        settings=settings,
        policy=load_policy(settings.policy_file),
        clock=clock,
        registry=registry,
        auth=Authenticator.from_file(settings.tokens_file),
        deliverer=deliverer,
        metrics=metrics,
    )


def main() -> None:
    """Start the notify worker in the foreground."""
    settings = NotifySettings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    service = create_service(settings, SystemClock(), CollectorRegistry())
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
