"""Configuration of the notify service (environment prefix `NOTIFY_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.notifications import Channel
from services.common.kafka import KafkaSettings
from services.common.smtp import SmtpSettings
from services.common.streams import StreamSettings
from services.notify.pagerduty import PagerDutySettings
from services.notify.retry import Backoff


class ChannelBackoff(BaseModel):
    """One channel's own retry pace (`NOTIFY_DELIVERY__<CHANNEL>__*`).

    Power Automate throttles a flow called in bursts, and PagerDuty rate-limits per
    routing key: both start slower than a paging gateway.
    """

    initial_backoff_seconds: float = Field(default=2.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)

    def backoff(self) -> Backoff:
        """Return the channel's backoff."""
        return Backoff(self.initial_backoff_seconds, self.max_backoff_seconds)


class DeliverySettings(BaseModel):
    """Retries and concurrency of deliveries (`NOTIFY_DELIVERY__*`)."""

    attempt_timeout_seconds: float = Field(default=10.0, gt=0)
    initial_backoff_seconds: float = Field(
        default=1.0, gt=0, description="webhooks and email; Teams and PagerDuty have their own"
    )
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    teams: ChannelBackoff = Field(default_factory=ChannelBackoff)
    pagerduty: ChannelBackoff = Field(default_factory=ChannelBackoff)
    max_retry_seconds: float = Field(
        default=300.0, gt=0, description="longest a notification is retried before it fails"
    )
    orphan_grace_seconds: float = Field(
        default=15.0, gt=0, description="after its deadline, when a lost notification is re-sent"
    )
    max_concurrent: int = Field(default=200, ge=1, description="deliveries in flight per worker")

    def backoffs(self) -> dict[Channel, Backoff]:
        """Return each channel's backoff."""
        common = Backoff(self.initial_backoff_seconds, self.max_backoff_seconds)
        return {
            Channel.WEBHOOK: common,
            Channel.EMAIL: common,
            Channel.TEAMS: self.teams.backoff(),
            Channel.PAGERDUTY: self.pagerduty.backoff(),
        }


class NotifySettings(BaseSettings):
    """Every setting of the notify service."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFY_", env_nested_delimiter="__", extra="forbid"
    )

    app_id: str = "safeguard-notify"
    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=0, le=65535)
    policy_file: Path = Path("policy/default.yaml")
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="URL of webhook receivers that name none in the policy"
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="signing secret per name used in the policy (NOTIFY_WEBHOOK_SECRETS__<NAME>)",
    )
    teams_urls: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Teams Workflows webhook URL per name used by a `teams` receiver's `secret` "
        "(NOTIFY_TEAMS_URLS__<NAME>): the URL's signature is the credential",
    )
    pagerduty_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="PagerDuty routing (integration) key per name used by a `pagerduty` "
        "receiver's `secret` (NOTIFY_PAGERDUTY_KEYS__<NAME>)",
    )
    pagerduty: PagerDutySettings = Field(default_factory=PagerDutySettings)
    rota_calendars: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="iCalendar feed URL per name used by a rota calendar's `secret` "
        "(NOTIFY_ROTA_CALENDARS__<NAME>), for feeds whose URL carries a token",
    )
    rota_cache_dir: Path | None = Field(
        default=None,
        description="where the last good copy of each rota calendar is kept across restarts",
    )
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    public_url: AnyHttpUrl | None = Field(
        default=None,
        description="the desk's address as duty managers reach it: every message links to "
        "<public_url>/console/alerts/<id> (with ?act=acknowledge to acknowledge); unset: "
        "messages carry no link",
    )
    group_window_seconds: float | None = Field(
        default=None,
        ge=0,
        description="overrides the policy's group_window (0: level 1 at once, never grouped); "
        "for tests that follow single alerts",
    )
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    check_interval_seconds: float = Field(
        default=0.2, gt=0, description="how often due escalation steps are looked for"
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    log_json: bool = True
    log_level: str = "INFO"
