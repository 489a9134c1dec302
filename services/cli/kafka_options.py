"""The Kafka connection options of the commands that read or write topics themselves."""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

from typing import Annotated, Any

import typer

from services.common.kafka import KafkaSettings

Bootstrap = Annotated[
    str, typer.Option(envvar="SAFEGUARD_KAFKA_BOOTSTRAP", help="HOST:PORT[,HOST:PORT]")
]
SecurityProtocol = Annotated[str, typer.Option(help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")]
SaslMechanism = Annotated[str | None, typer.Option(help="PLAIN, SCRAM-SHA-256 or -512")]
SaslUsername = Annotated[str | None, typer.Option()]
SaslPassword = Annotated[
    str | None,
    typer.Option(envvar="SAFEGUARD_KAFKA_PASSWORD", help="better: SAFEGUARD_KAFKA_PASSWORD"),
]
SslCafile = Annotated[str | None, typer.Option()]


def kafka_options(  # noqa: PLR0913 - one argument per option
    bootstrap: str,
    *,
    security_protocol: str = "PLAINTEXT",
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_cafile: str | None = None,
) -> dict[str, Any]:
    """Validate the options as the services' own settings and return kafka-python's."""
    try:
        settings = KafkaSettings.model_validate(
            {
                "bootstrap_servers": bootstrap,
                "security_protocol": security_protocol,
                "sasl_mechanism": sasl_mechanism,
                "sasl_username": sasl_username,
                "sasl_password": sasl_password,
                "ssl_cafile": ssl_cafile,
            }
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc).splitlines()[0]) from None
    return settings.kafka_python_options()
