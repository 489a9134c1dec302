"""Broker connection and topic names, shared by every service's settings class."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator


class Topics(BaseModel):
    """The topics of docs/contract.md section 5; overridable so tests can isolate themselves."""

    events: str = "safeguarding.events.v1"
    alerts: str = "safeguarding.alerts.v1"
    notifications: str = "safeguarding.notifications.v1"
    deadletter: str = "safeguarding.deadletter.v1"
    outcomes: str = "safeguarding.outcomes.v1"
    commands: str = "safeguarding.commands.v1"
    alert_views: str = "safeguarding.alert-views.v1"
    child_views: str = "safeguarding.child-views.v1"


class KafkaSettings(BaseModel):
    """How to reach the broker. Every broker setting comes from here, never from code."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = Field(
        default=None, description="client certificate (PEM), for brokers that require mTLS"
    )
    ssl_keyfile: str | None = Field(default=None, description="the client certificate's key")
    topics: Topics = Field(default_factory=Topics)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Caught at start-up: otherwise SASL without a mechanism fails only at connect time,
        # and a mechanism or certificate next to a protocol that ignores it is silently
        # not used.
        sasl = self.security_protocol.startswith("SASL")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is not used with {self.security_protocol}")
        uses_tls = self.security_protocol.endswith("SSL")
        tls_files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not uses_tls and any(tls_files):
            raise ValueError(f"ssl_* files are not used with {self.security_protocol}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    @property
    def servers(self) -> list[str]:
        """Return the bootstrap servers as a list."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def kafka_python_options(self) -> dict[str, object]:
        """Return the connection options in kafka-python's spelling."""
        options: dict[str, object] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        if self.ssl_certfile:
            options["ssl_certfile"] = self.ssl_certfile
            options["ssl_keyfile"] = self.ssl_keyfile
        return options

    def faust_broker_url(self) -> str:
        """Return the broker URL in Faust's spelling."""
        return ";".join(f"kafka://{server}" for server in self.servers)
