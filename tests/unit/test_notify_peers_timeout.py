"""A notify worker that hangs or refuses does not hold up the list: it is named, not waited on.

Real sockets on loopback: one peer accepts connections and never answers, one port has
nobody listening, one peer answers a page. Only the page-fetching part of `Peers` is
used; the group's membership (Faust's assignor) is given directly.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from devtools.broker import free_port
from services.notify import peers as peers_module
from services.notify.peers import Peers


class FixedPeers(Peers):
    def __init__(self, urls: list[str]) -> None:
        self._urls = urls

    def urls(self) -> list[str]:
        return self._urls


async def _scenario() -> tuple[list[dict[str, object]], list[str]]:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers: a hung worker
    answering = web.Application()

    async def page(request: web.Request) -> web.Response:
        assert request.query["local"] == "1"
        assert request.headers["Authorization"] == "Bearer t"
        return web.json_response({"alerts": [], "next_cursor": None, "partitions": [2]})

    answering.router.add_get("/v1/alerts", page)
    runner = web.AppRunner(answering)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    urls = [
        f"http://127.0.0.1:{silent.getsockname()[1]}",
        f"http://127.0.0.1:{free_port()}",  # nobody listening
        f"http://127.0.0.1:{port}",
    ]
    try:
        pages, unanswered = await FixedPeers(urls).pages({"limit": "5"}, "Bearer t")
    finally:
        await runner.cleanup()
        silent.close()
    return pages, unanswered


def test_hung_and_absent_workers_are_named_and_the_others_answer(monkeypatch) -> None:
    monkeypatch.setattr(peers_module, "PEER_TIMEOUT_SECONDS", 1.0)
    pages, unanswered = asyncio.run(_scenario())
    assert [p["partitions"] for p in pages] == [[2]]
    assert len(unanswered) == 2
