"""Faust plumbing shared by the risk and notify services: settings, topics, running a worker."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import faust
import structlog
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from pydantic import BaseModel, Field

from services.common.kafka import KafkaSettings
from services.common.kafka_clients import bootstrapped


class StreamSettings(BaseModel):
    """How a Faust worker joins its group and stores its tables."""

    store: str = Field(
        default="rocksdb://", description="`rocksdb://` in production, `memory://` for tests"
    )
    data_dir: Path = Path("/var/lib/safeguard")
    partitions: int = Field(default=4, ge=1, description="partitions of internal topics")
    replication_factor: int = Field(default=1, ge=1)
    standby_replicas: int = Field(default=1, ge=0)
    # Short group timeouts: a worker that dies is replaced within seconds, which matters
    # more here than the cost of a rebalance. Also what makes Tansu join quickly.
    rebalance_timeout_seconds: float = 6.0
    session_timeout_seconds: float = 10.0
    heartbeat_interval_seconds: float = 1.0
    commit_interval_seconds: float = 1.0
    publish_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long one publish may take before it counts as failed and is retried",
    )
    retry_max_delay_seconds: float = Field(
        default=10.0, gt=0, description="longest pause between retries of a transient failure"
    )
    producer_max_batch_size: int | None = Field(
        default=None,
        description="set to 1 on Tansu: it reports a wrong end offset after a multi-record "
        "batch, which makes table recovery skip the last changelog records. Binds the "
        "changelog producer only (see `publish_max_batch_size`)",
    )
    batch_max_messages: int = Field(
        default=500, ge=1, description="input messages the processor takes and handles together"
    )
    batch_within_seconds: float = Field(
        default=0.02,
        gt=0,
        description="how long the processor waits to fill a batch: what a quiet stream adds "
        "to a message's latency",
    )
    publish_max_batch_size: int | None = Field(
        default=None,
        description="max_batch_size (bytes) of the producer of alerts, outcomes, forwarded "
        "events and checks; None for aiokafka's default (16 KiB)",
    )


log = structlog.get_logger(__name__)


def key_partition(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default partitioner gives `key`.

    murmur2, as the Java client, kafka-python and aiokafka all do.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def topic_partitions(
    kafka: KafkaSettings, topic: str, *, timeout_seconds: float = 30.0
) -> int | None:
    """Return how many partitions `topic` has, or None if the broker cannot tell in time."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            consumer = bootstrapped(KafkaConsumer, **kafka.kafka_python_options())
            try:
                found = consumer.partitions_for_topic(topic)
            finally:
                consumer.close()
            if found:
                return len(found)
        except KafkaError as exc:
            log.warning("topic_metadata_failed", topic=topic, error=type(exc).__name__)
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def faust_options(
    kafka: KafkaSettings, stream: StreamSettings, *, web_host: str, web_port: int
) -> dict[str, Any]:
    """Return the keyword arguments for `faust.App`."""
    options: dict[str, Any] = {
        "broker": kafka.faust_broker_url(),
        "broker_credentials": broker_credentials(kafka),
        "store": stream.store,
        "datadir": str(stream.data_dir),
        "topic_partitions": stream.partitions,
        "topic_replication_factor": stream.replication_factor,
        "table_standby_replicas": stream.standby_replicas,
        "broker_rebalance_timeout": stream.rebalance_timeout_seconds,
        "broker_session_timeout": stream.session_timeout_seconds,
        "broker_heartbeat_interval": stream.heartbeat_interval_seconds,
        "broker_commit_interval": stream.commit_interval_seconds,
        "producer_acks": -1,
        # Faust would otherwise let variables such as WEB_PORT or BROKER_URL override
        # these; our settings class is the only source of configuration.
        "env": {},
        "web_host": web_host,
        "web_port": web_port,
        "web_bind": web_host,
        # Faust's own pages would expose table contents (personal data) over HTTP.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
    }
    if stream.producer_max_batch_size is not None:
        options["producer_max_batch_size"] = stream.producer_max_batch_size
    return options


def broker_credentials(kafka: KafkaSettings) -> Any:  # noqa: ANN401 - faust credentials are untyped
    """Return Faust's credentials for the configured security protocol.

    Faust derives the protocol from the credentials' type and whether they carry an SSL
    context: SASL credentials without a context would turn SASL_SSL into SASL_PLAINTEXT.
    """
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=password,
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Declare a topic (or several, read as one) whose keys and values our own code decodes.

    Raw, so nothing is skipped by a deserialiser of Faust's.
    """
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def run_worker(app: faust.App, *, log_level: str) -> None:
    """Run the app's worker in the foreground until SIGTERM or SIGINT."""
    worker = faust.Worker(
        app,
        loglevel=log_level,
        # Logging was configured at the entry point; mode would replace it otherwise.
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.spinner = None  # it writes terminal escapes to stdout even when not a terminal
    worker.execute_from_commandline()
