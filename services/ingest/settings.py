"""Configuration of the ingest service (environment prefix `INGEST_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.audit import AUDIT_TOPIC
from services.common.auth import Authenticator, TokenEntry
from services.common.kafka import KafkaSettings


class ProducerSettings(BaseModel):
    """kafka-python producer tuning; acks=all and idempotence are not negotiable."""

    linger_ms: int = Field(
        default=5, ge=0, description="how long a batch waits for more records before it is sent"
    )
    batch_size_bytes: int = Field(default=256 * 1024, gt=0, description="per-partition batch")


class IngestSettings(BaseSettings):
    """Every setting of the ingest service.

    Tokens come from `INGEST_TOKENS_FILE` (YAML or JSON, format of
    `config/dev-tokens.yaml`) or `INGEST_TOKENS` (the same entries as a JSON array, for
    platforms that inject secrets as variables); exactly one of the two.
    """

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens_file: Path | None = Field(
        default=None, description="YAML file of token hashes and what each may do"
    )
    tokens: list[TokenEntry] | None = Field(
        default=None, description="token entries as JSON, instead of tokens_file"
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    audit_topic: str = Field(
        default=AUDIT_TOPIC, description="topic of the audit trail (one record per event)"
    )
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="how long a request's body may take to arrive (408)"
    )
    header_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long a connection may take to send a request's headers, and stay "
        "idle between requests, before it is closed",
    )
    produce_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long a request waits for the broker before 503"
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, description="how long /readyz waits for the broker before 503"
    )
    retry_after_seconds: int = Field(default=5, ge=1)
    log_json: bool = True
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        if (self.tokens_file is None) == (self.tokens is None):
            raise ValueError("set exactly one of INGEST_TOKENS_FILE and INGEST_TOKENS")
        return self

    def authenticator(self) -> Authenticator:
        """Build the authenticator from whichever token source is configured."""
        if self.tokens is not None:
            return Authenticator(self.tokens)
        assert self.tokens_file is not None  # noqa: S101 - guaranteed by the validator
        return Authenticator.from_file(self.tokens_file)
