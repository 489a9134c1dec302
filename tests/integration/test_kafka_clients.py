"""A kafka-python client whose bootstrap fails leaves no I/O thread behind.

Against a port that refuses connections and against one that accepts them and never
answers (a broker hung, or a partition): the constructor fails, and its thread is gone.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError

from devtools.broker import BrokerStartError, free_port, wait_until_answers
from services.common.kafka_clients import bootstrapped

pytestmark = pytest.mark.integration


@pytest.fixture(params=["refused", "silent"])
def unanswering(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "refused":
        yield f"127.0.0.1:{free_port()}"
        return
    with socket.socket() as listener:  # accepts (the backlog does) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("kind", [KafkaAdminClient, KafkaConsumer])
def test_a_failed_bootstrap_stops_its_thread(kind: type[object], unanswering: str) -> None:
    client_id = f"probe-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaError):
        bootstrapped(
            kind,
            bootstrap_servers=unanswering,
            client_id=client_id,
            bootstrap_timeout_ms=1000,
            request_timeout_ms=1000,
        )
    left = [t for t in threading.enumerate() if t.name == f"kafka-io-{client_id}"]
    assert not _still_running(left), "the client's I/O thread is still running"


# A refusing port is never given a client (the wait polls TCP first): only a silent one.
@pytest.mark.parametrize("unanswering", ["silent"], indirect=True)
def test_waiting_for_a_broker_that_never_answers_leaves_no_thread(unanswering: str) -> None:
    """The development broker's start-up wait retries its admin client until it answers."""
    before = set(threading.enumerate())
    with pytest.raises(BrokerStartError):
        wait_until_answers(unanswering, timeout=3)
    new = [t for t in threading.enumerate() if t not in before and t.name.startswith("kafka-io")]
    assert not _still_running(new), "an admin client's I/O thread is still running"


def _still_running(threads: list[threading.Thread]) -> list[threading.Thread]:
    """Return those of `threads` that have not ended within a few seconds."""
    for thread in threads:
        thread.join(timeout=5)
    return [t for t in threads if t.is_alive()]
