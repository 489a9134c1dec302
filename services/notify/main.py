"""Entry point of the notify service: `safeguard-notify`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.auth import Authenticator, TokenConfigError
from services.common.clock import SystemClock
from services.common.environment import UnsafeConfiguration
from services.common.logging import configure_logging
from services.common.metrics import record_policy, service_registry
from services.common.streams import run_worker
from services.notify.app import NotifyService
from services.notify.channels import (
    EmailChannel,
    SmtpConfigError,
    WebhookChannel,
    require_https,
    require_strong_secrets,
    signing_key,
)
from services.notify.delivery import Deliverer
from services.notify.metrics import NotifyMetrics
from services.notify.policy import NotifyPolicy, load_policy
from services.notify.retry import Backoff
from services.notify.settings import NotifySettings


def create_service(
    settings: NotifySettings, clock: SystemClock, registry: CollectorRegistry
) -> NotifyService:
    """Wire the notify service from its settings."""
    # Before any key is decoded: a malformed one is refused with its name, not a trace.
    require_strong_secrets(
        {name: secret.get_secret_value() for name, secret in settings.webhook_secrets.items()}
    )
    metrics = NotifyMetrics(registry)
    d = settings.delivery
    deliverer = Deliverer(
        webhook=WebhookChannel(clock),
        email=EmailChannel(settings.smtp),
        secrets={
            name: signing_key(secret.get_secret_value())
            for name, secret in settings.webhook_secrets.items()
        },
        backoff=Backoff(d.initial_backoff_seconds, d.max_backoff_seconds),
        clock=clock,
        metrics=metrics,
        attempt_timeout=d.attempt_timeout_seconds,
    )
    policy = load_policy(settings.policy_file)
    record_policy(registry, settings.policy_file)
    require_https(webhook_urls(policy, settings))
    return NotifyService(
        settings=settings,
        policy=policy,
        clock=clock,
        registry=registry,
        auth=Authenticator.from_file(settings.tokens_file),
        deliverer=deliverer,
        metrics=metrics,
    )


def webhook_urls(policy: NotifyPolicy, settings: NotifySettings) -> list[str]:
    """Return every URL webhooks may go to: the policy's receivers' and the default."""
    urls = [str(r.url) for r in policy.receivers.values() if r.url is not None]
    if settings.webhook_url is not None:
        urls.append(str(settings.webhook_url))
    return urls


def main() -> None:
    """Start the notify worker in the foreground."""
    settings = NotifySettings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        service = create_service(settings, SystemClock(), service_registry())
    except (TokenConfigError, UnsafeConfiguration, SmtpConfigError) as exc:
        # Said plainly on stderr, exit status 1: the operator must read why.
        raise SystemExit(f"safeguard-notify: {exc}") from None
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
