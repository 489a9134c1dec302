"""Configuration of the ingest service (environment prefix `INGEST_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.kafka import KafkaSettings


class IngestSettings(BaseSettings):
    """Every setting of the ingest service."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens_file: Path = Field(description="YAML file of token hashes and what each may do")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    produce_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long a request waits for the broker before 503"
    )
    retry_after_seconds: int = Field(default=5, ge=1)
    log_json: bool = True
    log_level: str = "INFO"
