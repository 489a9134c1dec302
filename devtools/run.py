"""`make run`: the development broker and PostgreSQL, the services and a webhook inbox.

The desk's database is migrated (`safeguard db upgrade`) before the desk starts; with
`DESK_DATABASE_URL` set, that server is used (and migrated) instead of an embedded one.

Ctrl-C (or SIGTERM) stops everything in order; children also die with this process if
it is killed, so nothing is left behind.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from devtools.broker import DevBroker, create_topics, wait_until_answers
from devtools.postgres import DevPostgres
from devtools.stack import DEV_TOKEN, DevStack
from services.common.logging import configure_logging
from services.common.processes import spawn, stop
from services.desk import migrate


class DevSettings(BaseSettings):
    """Settings of the development runner (environment prefix `SAFEGUARD_DEV_`)."""

    model_config = SettingsConfigDict(env_prefix="SAFEGUARD_DEV_", extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "SAFEGUARD_DEV_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="use this broker instead of starting Tansu",
    )
    broker_port: int = 9092
    inbox_port: int = 8083
    inbox_smtp_port: int = 8025
    desk_port: int = 8084
    postgres_port: int = 5433
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DESK_DATABASE_URL", "SAFEGUARD_DEV_DATABASE_URL"),
        description="use this PostgreSQL for the desk instead of starting one",
    )


def main() -> None:
    """Run everything until interrupted."""
    settings = DevSettings()
    configure_logging(json=False)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    broker: DevBroker | None = None
    if settings.kafka_bootstrap_servers:
        bootstrap = settings.kafka_bootstrap_servers
        wait_until_answers(bootstrap)
    else:
        broker = DevBroker(port=settings.broker_port).start()
        bootstrap = broker.bootstrap
    inbox = spawn(
        [
            sys.executable,
            "-m",
            "devtools.inbox",
            "--port",
            str(settings.inbox_port),
            "--smtp-port",
            str(settings.inbox_smtp_port),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="safeguard-dev-") as data_dir:
        postgres: DevPostgres | None = None
        if settings.database_url:
            database_url = settings.database_url
        else:
            postgres = DevPostgres(Path(data_dir) / "postgres", settings.postgres_port).start()
            database_url = postgres.create_database("safeguard")
        migrate.upgrade(database_url)  # what `safeguard db upgrade` does
        stack = DevStack(
            bootstrap=bootstrap,
            data_dir=Path(data_dir),
            webhook_url=f"http://127.0.0.1:{settings.inbox_port}/notifications",
            smtp_port=settings.inbox_smtp_port,
            group_window_seconds=None,  # the policy's: alerts of one event in one message
            desk_ports=[settings.desk_port],
            database_url=database_url,
        )
        where = "DESK_DATABASE_URL" if postgres is None else postgres.dsn("safeguard")
        try:
            create_topics(bootstrap, stack.topic_names())
            stack.start()
            print(  # noqa: T201 - the runner talks to the developer
                "\nSafeguard is running (development mode). Ctrl-C stops everything.\n"
                f"  ingest  {stack.url('ingest')}   POST /v1/events\n"
                f"  risk    {stack.url('risk')}   /metrics /readyz\n"
                f"  notify  {stack.url('notify')}   /metrics /readyz\n"
                f"  desk    {stack.url('desk')}   /console  GET /v1/alerts\n"
                f"  inbox   http://127.0.0.1:{settings.inbox_port} and smtp port "
                f"{settings.inbox_smtp_port}   (prints webhook and email deliveries)\n"
                f"  broker  {bootstrap}\n"
                f"  desk db {where}\n"
                f"  token   Authorization: Bearer {DEV_TOKEN}\n"
                "  sign-in the console takes a development token (safeguard-dev-token, or\n"
                "          safeguard-dev-north / -south for one area: config/dev-tokens.yaml)\n",
                flush=True,
            )
            while not stopping.wait(0.5):
                for name, process in stack.processes.items():
                    if process.poll() is not None:
                        print(f"{name} exited with code {process.returncode}; stopping", flush=True)  # noqa: T201
                        stopping.set()
        finally:
            stack.stop()
            stop(inbox)
            if postgres is not None:
                postgres.close()
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
