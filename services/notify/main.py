"""Entry point of the notify service: `safeguard-notify`."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from schemas.notifications import Channel
from services.common.clock import SystemClock
from services.common.environment import UnsafeConfiguration, load_settings
from services.common.logging import configure_logging
from services.common.metrics import record_policy, service_registry
from services.common.smtp import SmtpConfigError
from services.common.streams import run_worker
from services.notify.app import NotifyService
from services.notify.channels import (
    EmailChannel,
    WebhookChannel,
    require_https,
    require_strong_secrets,
    signing_key,
)
from services.notify.content import Presentation
from services.notify.delivery import Deliverer
from services.notify.guidance import rules_without_guidance
from services.notify.metrics import NotifyMetrics
from services.notify.pagerduty import PagerDutyChannel
from services.notify.policy import NotifyPolicy, load_policy
from services.notify.retry import Backoff
from services.notify.rota_feed import RotaFeeds
from services.notify.settings import NotifySettings
from services.notify.teams import TeamsChannel

log = structlog.get_logger(__name__)


class ChannelConfigError(ValueError):
    """A receiver of the policy has no credential in the environment (a URL, a key)."""


def check_channel_secrets(policy: NotifyPolicy, settings: NotifySettings) -> None:
    """Refuse to start when a Teams, PagerDuty or rota calendar secret is not set.

    Webhook signing secrets are checked with the service (services/notify/app.py).
    """
    wanted = {
        "NOTIFY_TEAMS_URLS": (policy.secret_names(Channel.TEAMS), settings.teams_urls),
        "NOTIFY_PAGERDUTY_KEYS": (policy.secret_names(Channel.PAGERDUTY), settings.pagerduty_keys),
        "NOTIFY_ROTA_CALENDARS": (policy.calendar_secret_names(), settings.rota_calendars),
    }
    missing = [
        f"{prefix}__{name.upper()}"
        for prefix, (names, given) in wanted.items()
        for name in sorted(names - set(given))
    ]
    if missing:
        raise ChannelConfigError(f"secrets not set: {', '.join(missing)}")


def create_service(
    settings: NotifySettings, clock: SystemClock, registry: CollectorRegistry
) -> NotifyService:
    """Wire the notify service from its settings."""
    # Before any key is decoded: a malformed one is refused with its name, not a trace.
    require_strong_secrets(
        {name: secret.get_secret_value() for name, secret in settings.webhook_secrets.items()}
    )
    metrics = NotifyMetrics(registry)
    policy = load_policy(settings.policy_file)
    record_policy(registry, settings.policy_file)
    check_channel_secrets(policy, settings)
    require_https(webhook_urls(policy, settings))
    missing_guidance = rules_without_guidance(policy.guidance)
    if missing_guidance:
        log.warning("policy_guidance_missing", rules=missing_guidance)
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
        teams=TeamsChannel(
            clock, {name: url.get_secret_value() for name, url in settings.teams_urls.items()}
        ),
        pagerduty=PagerDutyChannel(
            clock,
            {name: key.get_secret_value() for name, key in settings.pagerduty_keys.items()},
            settings.pagerduty,
        ),
        backoffs=d.backoffs(),
        presentation=Presentation.of(policy),
    )
    feeds = rota_feeds(policy, settings, clock, registry)
    service = NotifyService(
        settings=settings,
        policy=policy,
        clock=clock,
        registry=registry,
        deliverer=deliverer,
        metrics=metrics,
        # Fetched here, cached, the last good copy kept: an alert's chain is resolved
        # with who is on duty when it is raised.
        calendars=dict if feeds is None else feeds.snapshot,
    )
    if feeds is not None:
        service.app.task(feeds.refresh_due)  # at start, then each minute for what is due
        service.app.timer(60.0, name="rota_refresh")(feeds.refresh_due)
    return service


def rota_feeds(
    policy: NotifyPolicy, settings: NotifySettings, clock: SystemClock, registry: CollectorRegistry
) -> RotaFeeds | None:
    """Return the rota calendars' fetcher, or None when the rota has no calendar."""
    if not policy.rota.calendars():
        return None
    return RotaFeeds(
        policy.rota,
        zone=policy.zone,
        known=set(policy.receivers),
        urls={name: url.get_secret_value() for name, url in settings.rota_calendars.items()},
        clock=clock,
        registry=registry,
        cache_dir=settings.rota_cache_dir,
    )


def webhook_urls(policy: NotifyPolicy, settings: NotifySettings) -> list[str]:
    """Return every URL deliveries may go to: webhooks, Teams flows, PagerDuty's API."""
    urls = [str(r.url) for r in policy.receivers.values() if r.url is not None]
    if settings.webhook_url is not None:
        urls.append(str(settings.webhook_url))
    teams = policy.secret_names(Channel.TEAMS)
    urls += [url.get_secret_value() for name, url in settings.teams_urls.items() if name in teams]
    if policy.secret_names(Channel.PAGERDUTY):
        urls.append(str(settings.pagerduty.events_url))
    return urls


def main() -> None:
    """Start the notify worker in the foreground."""
    settings = load_settings(NotifySettings, "notify")
    configure_logging(json=settings.log_json, level=settings.log_level)
    try:
        service = create_service(settings, SystemClock(), service_registry())
    except (UnsafeConfiguration, SmtpConfigError, ChannelConfigError) as exc:
        # Said plainly on stderr, exit status 1: the operator must read why.
        raise SystemExit(f"safeguard-notify: {exc}") from None
    run_worker(service.app, log_level=settings.log_level)


if __name__ == "__main__":
    main()
