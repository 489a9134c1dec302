"""Configuration of the desk (environment prefix `DESK_`, nested groups with `__`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.audit import AUDIT_TOPIC
from services.common.auth import Authenticator, Role
from services.common.environment import is_development, refuse_outside_development
from services.common.kafka import KafkaSettings
from services.common.smtp import SmtpSettings

EVERY_AREA = "*"
GroupName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
#: An area code (schemas.envelope.AreaCode), or `"*"` for every area.
AreaGrant = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9._:-]{1,64}|\*)$")]


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


class OidcSettings(BaseModel):
    """People sign in with OpenID Connect (`DESK_OIDC__*`): Entra ID, Keycloak or another.

    Roles and areas come from the ID token's group claim through two mappings: a group
    may give roles (`group_roles`), a group may give areas (`group_areas`, `"*"`: every
    area). A person gets the union of what their groups give; a person none of whose
    groups is mapped gets nothing and is refused (fail closed), and so is one with roles
    but no area: there would be nothing for them to see.
    """

    issuer: str = Field(
        description="the provider's issuer URL, exactly as its discovery document states it"
    )
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    redirect_url: str = Field(
        description="this desk's callback as the provider knows it: "
        "https://desk.example/console/sign-in/callback"
    )
    scopes: str = "openid profile"
    groups_claim: str = Field(default="groups", description="the ID token claim listing groups")
    name_claim: str = Field(default="name", description="the claim that says what to call them")
    group_roles: dict[GroupName, list[Role]] = Field(default_factory=dict)
    group_areas: dict[GroupName, list[AreaGrant]] = Field(default_factory=dict)
    display: str = Field(
        default="your organisation's account", description="the sign-in button names this"
    )
    timeout_seconds: float = Field(
        default=5.0, gt=0, description="each call to the provider (discovery, keys, token)"
    )
    leeway_seconds: float = Field(default=60.0, ge=0, description="clock skew allowed")
    attempt_seconds: float = Field(
        default=600.0, gt=0, description="how long a person may take at the provider"
    )
    metadata_seconds: float = Field(
        default=3600.0, gt=0, description="how long the discovery document and keys are kept"
    )

    @model_validator(mode="after")
    def _https(self) -> Self:
        # Plain http only on loopback in development (a provider the tests start).
        for name, url in (("issuer", self.issuer), ("redirect_url", self.redirect_url)):
            parts = urlsplit(url)
            if parts.scheme not in {"https", "http"} or not parts.netloc:
                raise ValueError(f"DESK_OIDC__{name.upper()} must be an absolute URL")
            if parts.scheme == "http" and not is_development():
                raise refuse_outside_development(
                    f"DESK_OIDC__{name.upper()} is http://, not https://"
                )
        if "openid" not in self.scopes.split():
            raise ValueError("DESK_OIDC__SCOPES must include openid")
        if not self.group_roles:
            raise ValueError("DESK_OIDC__GROUP_ROLES maps no group: nobody could sign in")
        return self


class SignInSettings(BaseModel):
    """Sign-in throttling, counted in PostgreSQL by every pod together (`DESK_SIGN_IN__*`)."""

    window_seconds: float = Field(default=600.0, gt=0, description="the counting window")
    attempts_per_client: int = Field(
        default=30, ge=1, description="sign-ins started from one client address per window"
    )
    failures_per_client: int = Field(
        default=10, ge=1, description="failed sign-ins from one client address per window"
    )
    failures_per_account: int = Field(
        default=5, ge=1, description="failed sign-ins of one account (token or person)"
    )
    forwarded_for_hops: int = Field(
        default=0,
        ge=0,
        description="proxies in front of the desk that append to X-Forwarded-For (the "
        "ingress: 1); 0 takes the connection's address",
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
    policy_file: Path | None = Field(
        default=None,
        description="the policy file notify uses (time zone, guidance, rota, its `assurance` "
        "section, receivers); unset: times in Europe/London, no guidance, no on-duty panel, "
        "the assurance defaults and nobody to send digests or packs to",
    )
    publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long a request waits for the broker before 503"
    )
    projector: ProjectorSettings = Field(default_factory=ProjectorSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    oidc: OidcSettings | None = Field(
        default=None,
        description="people's sign-in; required to serve the console outside development",
    )
    token_sign_in: bool | None = Field(
        default=None,
        description="the console's sign-in with a token typed in: development only "
        "(default: on in development, off otherwise)",
    )
    sign_in: SignInSettings = Field(default_factory=SignInSettings)
    header_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="a connection that sends no whole request's headers this long after it "
        "opened, or after its last answer, is closed",
    )
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request body that takes longer to arrive is a 408"
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="larger request bodies are refused (413)"
    )
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    log_json: bool = True
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _sign_in(self) -> Self:
        if self.token_sign_in and not is_development():
            raise refuse_outside_development(
                "DESK_TOKEN_SIGN_IN is on: people sign in with OpenID Connect"
            )
        if self.serve and self.oidc is None and not is_development():
            raise refuse_outside_development(
                "DESK_OIDC__ISSUER is not set: nobody could sign in to the console"
            )
        return self

    @property
    def tokens_sign_in(self) -> bool:
        """Tell whether the console offers sign-in with a token (development only)."""
        return is_development() if self.token_sign_in is None else self.token_sign_in

    def authenticator(self) -> Authenticator:
        """Build the authenticator from the token file."""
        return Authenticator.from_file(self.tokens_file)
