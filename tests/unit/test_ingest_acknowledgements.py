"""Bridging kafka-python futures to asyncio: settled once, when all succeeded or one failed."""

from __future__ import annotations

import asyncio
import threading

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from services.ingest.producer import _all_acknowledged


def run(coro):
    return asyncio.run(coro)


def test_settles_when_every_future_succeeded_even_from_other_threads() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        futures = [Future() for _ in range(200)]
        done = _all_acknowledged(loop, futures)
        threads = [threading.Thread(target=f.success, args=(None,)) for f in futures[:-1]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        await asyncio.sleep(0)
        assert not done.done()
        futures[-1].success(None)
        await asyncio.wait_for(done, 1)

    run(scenario())


def test_first_failure_wins() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        futures = [Future() for _ in range(3)]
        done = _all_acknowledged(loop, futures)
        futures[0].success(None)
        futures[1].failure(KafkaTimeoutError("expired"))
        futures[2].success(None)
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(done, 1)

    run(scenario())


def test_nothing_to_wait_for() -> None:
    async def scenario() -> None:
        await asyncio.wait_for(_all_acknowledged(asyncio.get_running_loop(), []), 1)

    run(scenario())
