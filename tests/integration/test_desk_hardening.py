"""The desk's HTTP server against hostile hands: slow clients are bounded (headers and
bodies), large bodies refused, and every answer carries the security headers. An
in-process desk on the real broker and PostgreSQL, spoken to over raw sockets."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import create_topics
from services.common.kafka import Topics
from tests.fixtures import loopback
from tests.fixtures.desk import DeskServer, desk_settings
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.tokens import TokenSet

pytestmark = pytest.mark.integration

TOKENS = TokenSet.matrix()


@pytest.fixture(scope="module")
def desk(
    kafka_bootstrap: str, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeskServer]:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(**{k: f"h{suffix}.{v}" for k, v in Topics().model_dump().items()})
    audit_topic = f"h{suffix}.safeguarding.audit.v1"
    create_topics(kafka_bootstrap, [*topics.model_dump().values(), audit_topic])
    url = postgres.create()
    folder: Path = tmp_path_factory.mktemp("hardening")
    settings = desk_settings(
        database_url=url,
        bootstrap=kafka_bootstrap,
        topics=topics,
        audit_topic=audit_topic,
        group=f"hard-{suffix}",
        tokens_file=TOKENS.write(folder / "tokens.yaml"),
        header_timeout_seconds=1.0,
        body_timeout_seconds=1.0,
    )
    server = DeskServer(settings).start()
    try:
        yield server
    finally:
        server.stop()
        postgres.drop(url)


def _connect(desk: DeskServer) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", desk.settings.port), timeout=10)
    connection.settimeout(10)
    return connection


def _closed_within(connection: socket.socket, trickle: bytes, seconds: float) -> float:
    """Trickle bytes one at a time; return when the server closed the connection."""
    started = time.monotonic()
    for byte in trickle:
        try:
            connection.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        time.sleep(0.2)
        if time.monotonic() - started > seconds:
            break
    try:
        return time.monotonic() - started if connection.recv(1024) == b"" else -1.0
    except (ConnectionResetError, TimeoutError):
        return time.monotonic() - started


def test_headers_sent_slowly_are_cut_off(desk: DeskServer) -> None:
    connection = _connect(desk)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: desk\r\n")
    took = _closed_within(connection, b"X-Slow: " + b"a" * 200, seconds=8)
    connection.close()
    assert 0 < took < 5  # the header timeout is 1 s; a trickle never extends it


def test_a_body_sent_slowly_is_a_408(desk: DeskServer) -> None:
    connection = _connect(desk)
    connection.sendall(
        b"POST /v1/alerts/al-x/ack HTTP/1.1\r\nHost: desk\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {TOKENS.secret('duty-all')}\r\n".encode()
        + b'Content-Length: 100\r\n\r\n{"no'
    )
    started = time.monotonic()
    answer = connection.recv(4096)
    took = time.monotonic() - started
    connection.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert took < 5


def test_a_large_body_is_refused_and_every_answer_carries_the_security_headers(
    desk: DeskServer,
) -> None:
    big = loopback.post(
        f"{desk.url}/v1/alerts/al-x/ack",
        content=b"{" + b" " * (100 * 1024) + b"}",
        headers={**TOKENS.header("duty-all"), "Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413
    assert big.json()["error"] == "too_large"
    for answer in (
        big,
        loopback.get(f"{desk.url}/v1/alerts", timeout=30),
        loopback.get(f"{desk.url}/nowhere", timeout=30),
        loopback.get(f"{desk.url}/console/queue", timeout=30),
    ):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
