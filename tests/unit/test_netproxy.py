"""The fault tests' TCP proxy does what it says, against a real echo server on loopback."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.netproxy import Mode, NetProxy

# How long a read waits before the proxy is taken to have swallowed the bytes. Silence can
# only be observed for a while; an echo on loopback takes well under a millisecond.
SILENCE = 0.5


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(4096):
                self.request.sendall(data)
        except ConnectionResetError:
            # The proxy resets its upstream connections too; that ends the echo, quietly.
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[NetProxy]:
    proxy = NetProxy("127.0.0.1", echo).start()
    yield proxy
    proxy.stop()


def connect(proxy: NetProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def echoes(sock: socket.socket, payload: bytes = b"ping") -> bool:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            return False
        received += chunk
    return received == payload


def is_reset(sock: socket.socket) -> bool:
    """Tell whether the peer reset (or closed) the connection."""
    try:
        sock.sendall(b"x")
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def new_connection_is_reset(proxy: NetProxy) -> bool:
    # The reset can come before connect() returns, or on the first exchange.
    try:
        sock = connect(proxy)
    except ConnectionError:
        return True
    with sock:
        return is_reset(sock)


def test_forwards_both_ways(proxy: NetProxy) -> None:
    with connect(proxy) as sock:
        assert echoes(sock)
        assert echoes(sock, b"y" * 200_000)
    assert proxy.mode is Mode.FORWARD


def test_a_partition_swallows_bytes_and_its_end_resets_the_connections(proxy: NetProxy) -> None:
    with connect(proxy) as before:
        assert echoes(before)
        proxy.partition()
        before.sendall(b"lost")
        before.settimeout(SILENCE)
        with pytest.raises(TimeoutError):
            before.recv(4096)
        # A connection opened during the partition is accepted and swallowed too.
        with connect(proxy) as during:
            during.sendall(b"lost too")
            during.settimeout(SILENCE)
            with pytest.raises(TimeoutError):
                during.recv(4096)
            proxy.heal()
            during.settimeout(5)
            assert is_reset(during)
        before.settimeout(5)
        assert is_reset(before)
    with connect(proxy) as after:
        assert echoes(after)


def test_refuse_resets_open_and_new_connections_until_healed(proxy: NetProxy) -> None:
    with connect(proxy) as before:
        assert echoes(before)
        proxy.refuse()
        assert is_reset(before)
    assert proxy.connections == 0
    assert new_connection_is_reset(proxy)
    proxy.heal()
    with connect(proxy) as after:
        assert echoes(after)
