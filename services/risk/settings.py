"""Configuration of the risk service (environment prefix `RISK_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.audit import AUDIT_TOPIC
from services.common.environment import is_development, refuse_outside_development
from services.common.kafka import KafkaSettings
from services.common.streams import StreamSettings
from services.risk.policy import DEVELOPMENT_ALERT_KEY
from services.risk.producers import DirectProducer, load_producers

# 256 bits: as long as the HMAC-SHA256 output it keys.
MIN_SECRET_BYTES = 32


class RiskSettings(BaseSettings):
    """Every setting of the risk service."""

    model_config = SettingsConfigDict(env_prefix="RISK_", env_nested_delimiter="__", extra="forbid")

    app_id: str = "safeguard-risk"
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    policy_file: Path = Path("policy/default.yaml")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    check_interval_seconds: float = Field(
        default=0.5, gt=0, description="how often due deadlines are looked for"
    )
    alert_id_secret: SecretStr | None = Field(
        default=None,
        description="secret alert ids are keyed with (HMAC-SHA256); keep it for the life of "
        "the deployment, or alert ids change. Required outside development mode",
    )
    direct_producers_file: Path | None = Field(
        default=None,
        description="YAML file of the direct producers whose topics risk reads, each with its "
        "scopes (services/risk/producers.py); none when unset",
    )
    audit_topic: str = Field(
        default=AUDIT_TOPIC,
        description="topic of the audit trail (direct producers' accepted and refused events)",
    )
    log_json: bool = True
    log_level: str = "INFO"

    def direct_producers(self, *, development: bool | None = None) -> list[DirectProducer]:
        """Return the direct producers, each with its topic and scopes.

        Raises ProducerConfigError naming the problem (a file that cannot be read, is
        malformed, lists a name twice, or a `"*"` source outside development mode).
        """
        if self.direct_producers_file is None:
            return []
        dev = is_development() if development is None else development
        return load_producers(self.direct_producers_file, self.kafka.topics.events, development=dev)

    def alert_key(self, *, development: bool | None = None) -> bytes:
        """Return the alert-id secret, refusing a missing or development one in production.

        Raises UnsafeConfiguration naming the problem.
        """
        dev = is_development() if development is None else development
        if self.alert_id_secret is None:
            if dev:
                return DEVELOPMENT_ALERT_KEY
            raise refuse_outside_development("RISK_ALERT_ID_SECRET is not set")
        key = self.alert_id_secret.get_secret_value().encode()
        if not dev and (key == DEVELOPMENT_ALERT_KEY or len(key) < MIN_SECRET_BYTES):
            raise refuse_outside_development(
                "RISK_ALERT_ID_SECRET is the development secret or shorter than "
                f"{MIN_SECRET_BYTES} bytes"
            )
        if not key:
            raise refuse_outside_development("RISK_ALERT_ID_SECRET is empty")
        return key
