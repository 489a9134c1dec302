"""A bare Faust agent doing a risk worker's I/O and nothing else: the stream engine's limit.

    .venv/bin/python bench/bare_faust.py --bootstrap HOST:PORT --topic T --count N
        [--partitions 4] [--changelog-batch-size 1]

Reads `--count` records from `--topic` in batches as the stream core does
(`take_events(500, within=0.02)`), writes each to a table (a changelog record) and
publishes one record per input to an output topic, all of a batch's sends handed over
before their answers are awaited; no decoding, no decision. Prints the rate from the
first record to the last as one JSON line and exits. The service benchmarks run it on
the same broker as a limit: what the services' own work costs is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import faust
from faust.streams import _current_event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--changelog-batch-size", type=int)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    options: dict[str, Any] = {
        "broker": f"kafka://{args.bootstrap}",
        "store": "memory://",
        "datadir": args.data_dir,
        "topic_partitions": args.partitions,
        "broker_rebalance_timeout": 6,
        "broker_session_timeout": 6,
        "broker_heartbeat_interval": 1,
        "producer_acks": -1,
        "web_enabled": False,
        "env": {},
    }
    if args.changelog_batch_size:
        options["producer_max_batch_size"] = args.changelog_batch_size
    app = faust.App(f"bare-{uuid.uuid4().hex[:8]}", **options)
    source = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    out = app.topic(f"{args.topic}-out", key_serializer="raw", value_serializer="raw")
    table = app.Table("bare", default=None, key_type=bytes, value_type=bytes)
    seen = 0
    started: float | None = None

    @app.agent(source)
    async def process(stream: Any) -> None:  # noqa: ANN401 - faust streams are untyped
        nonlocal seen, started
        async for events in stream.take_events(500, within=0.02):
            if started is None:
                started = time.perf_counter()
            producer = await app.maybe_start_producer()
            pending = []
            for event in events:
                # As the stream core writes a batch: from the event whose partition owns it.
                token = _current_event.set(weakref.ref(event))
                try:
                    table[event.message.key] = event.message.value
                finally:
                    _current_event.reset(token)
                pending.append(
                    await producer.send(
                        out.get_topic_name(), event.message.key, b"x", None, None, None
                    )
                )
            await asyncio.gather(*pending)
            seen += len(events)
            if seen >= args.count:
                rate = seen / (time.perf_counter() - started)
                print(json.dumps({"records": seen, "rate": rate}), flush=True)
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
