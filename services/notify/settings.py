"""Configuration of the notify service (environment prefix `NOTIFY_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.kafka import KafkaSettings
from services.common.streams import StreamSettings


class NotifySettings(BaseSettings):
    """Every setting of the notify service."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFY_", env_nested_delimiter="__", extra="forbid"
    )

    app_id: str = "safeguard-notify"
    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=0, le=65535)
    tokens_file: Path = Field(description="YAML file of token hashes and roles")
    webhook_url: AnyHttpUrl = Field(description="receiver of level-1 notifications")
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    log_json: bool = True
    log_level: str = "INFO"
