"""Configuration of the risk service (environment prefix `RISK_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.kafka import KafkaSettings
from services.common.streams import StreamSettings


class RiskSettings(BaseSettings):
    """Every setting of the risk service."""

    model_config = SettingsConfigDict(env_prefix="RISK_", env_nested_delimiter="__", extra="forbid")

    app_id: str = "safeguard-risk"
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    policy_file: Path = Path("policy/default.yaml")
    tokens_file: Path = Field(description="YAML file of token hashes and roles")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    check_interval_seconds: float = Field(
        default=0.5, gt=0, description="how often due deadlines are looked for"
    )
    log_json: bool = True
    log_level: str = "INFO"
