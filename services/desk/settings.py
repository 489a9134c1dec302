"""Configuration of the desk (environment prefix `DESK_`, nested groups with `__`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.audit import AUDIT_TOPIC
from services.common.auth import Authenticator
from services.common.kafka import KafkaSettings
from services.common.smtp import SmtpSettings


class DatabaseSettings(BaseModel):
    """How the desk uses its PostgreSQL connections (`DESK_DB__*`)."""

    pool_size: int = Field(default=10, ge=1, description="connections kept per desk process")
    max_overflow: int = Field(default=10, ge=0)
    connect_timeout_seconds: float = Field(
        default=3.0, gt=0, description="a connection attempt that takes longer fails (503)"
    )
    statement_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a query that takes longer is cancelled (503)"
    )


class ProjectorSettings(BaseModel):
    """The projector, a background task of the desk (`DESK_PROJECTOR__*`).

    Switched off (`DESK_PROJECTOR__ENABLED=false`), the pod serves pages only, and the
    projector runs as its own deployment (`DESK_SERVE=false` there).
    """

    enabled: bool = True
    group_id: str = "safeguard-desk"
    max_records: int = Field(default=1000, ge=1, description="records written per transaction")
    poll_timeout_seconds: float = Field(default=0.5, gt=0)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    heartbeat_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often an idle projector marks itself caught up"
    )


class ConsoleSettings(BaseModel):
    """The console and its sessions (`DESK_CONSOLE__*`)."""

    session_idle_seconds: float = Field(
        default=30 * 60, gt=0, description="a session unused this long is signed out"
    )
    session_max_seconds: float = Field(
        default=12 * 3600, gt=0, description="a session ends this long after sign-in (a shift)"
    )
    sessions_per_principal: int = Field(
        default=20, ge=1, description="sessions one token may hold; the oldest goes first"
    )
    refresh_seconds: float = Field(
        default=5.0, gt=0, description="how often an open work queue fetches its rows"
    )
    stale_after_seconds: float = Field(
        default=10.0, gt=0, description="the pages say so when the projection is this far behind"
    )


class ReportsSettings(BaseModel):
    """The timeliness report's retention (`DESK_REPORTS__*`)."""

    retention_days: int = Field(
        default=1096,
        ge=1,
        description="a finished obligation leaves the report this long after its last date",
    )
    prune_interval_seconds: float = Field(
        default=3600, gt=0, description="how often each desk pod deletes what has expired"
    )


class ScheduleSettings(BaseModel):
    """The weekly digests and monthly packs (`DESK_SCHEDULE__*`); when is policy."""

    enabled: bool = Field(
        default=True, description="send them (they need DESK_POLICY_FILE for recipients)"
    )
    interval_seconds: float = Field(default=30, gt=0, description="how often a pod looks")
    lease_seconds: float = Field(
        default=600, gt=0, description="how long a pod holds a send it took before another may"
    )
    retry_initial_seconds: float = Field(default=60, gt=0)
    retry_max_seconds: float = Field(default=3600, gt=0)
    gauges_interval_seconds: float = Field(
        default=60, gt=0, description="how often the caseload and on-time gauges are recomputed"
    )


class DeskSettings(BaseSettings):
    """Every setting of the desk."""

    model_config = SettingsConfigDict(env_prefix="DESK_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8084, ge=0, le=65535)
    serve: bool = Field(default=True, description="serve HTTP (false: a projector-only process)")
    tokens_file: Path = Field(description="YAML file of token hashes and roles")
    database_url: SecretStr = Field(
        description="SQLAlchemy URL of the desk's database, postgresql+psycopg://user@host/db"
    )
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    audit_topic: str = Field(default=AUDIT_TOPIC, description="topic of the audit trail")
    publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long a request waits for the broker before 503"
    )
    projector: ProjectorSettings = Field(default_factory=ProjectorSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    policy_file: Path | None = Field(
        default=None,
        description="the policy file (its `assurance` section, routing and receivers); "
        "unset: the assurance defaults and nobody to send digests or packs to",
    )
    log_json: bool = True
    log_level: str = "INFO"

    def authenticator(self) -> Authenticator:
        """Build the authenticator from the token file."""
        return Authenticator.from_file(self.tokens_file)
