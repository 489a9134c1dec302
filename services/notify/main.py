"""Entry point of the notify service: `safeguard-notify`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator
from services.common.clock import SystemClock
from services.common.logging import configure_logging
from services.common.streams import run_worker
from services.notify.app import NotifyService
from services.notify.settings import NotifySettings
from services.notify.webhook import WebhookChannel


def main() -> None:
    """Start the notify worker in the foreground."""
    settings = NotifySettings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    webhook = WebhookChannel(timeout_seconds=settings.webhook_timeout_seconds)
    service = NotifyService(
        settings,
        SystemClock(),
        CollectorRegistry(),
        Authenticator.from_file(settings.tokens_file),
        webhook,
    )
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
