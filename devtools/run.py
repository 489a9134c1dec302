"""`make run`: the development broker, the three services and a webhook inbox, in the foreground.

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
from devtools.stack import DEV_TOKEN, DevStack
from services.common.logging import configure_logging
from services.common.processes import spawn, stop


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
        stack = DevStack(
            bootstrap=bootstrap,
            data_dir=Path(data_dir),
            webhook_url=f"http://127.0.0.1:{settings.inbox_port}/notifications",
            smtp_port=settings.inbox_smtp_port,
            group_window_seconds=None,  # the policy's: alerts of one event in one message
        )
        try:
            create_topics(bootstrap, stack.topic_names())
            stack.start()
            print(  # noqa: T201 - the runner talks to the developer
                "\nSafeguard is running (development mode). Ctrl-C stops everything.\n"
                f"  ingest  {stack.url('ingest')}   POST /v1/events\n"
                f"  risk    {stack.url('risk')}   /metrics /readyz\n"
                f"  notify  {stack.url('notify')}   GET /v1/alerts\n"
                f"  inbox   http://127.0.0.1:{settings.inbox_port} and smtp port "
                f"{settings.inbox_smtp_port}   (prints webhook and email deliveries)\n"
                f"  broker  {bootstrap}\n"
                f"  token   Authorization: Bearer {DEV_TOKEN}\n",
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
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
