"""A development webhook receiver that prints what notify delivers, so `make run` shows alerts."""

from __future__ import annotations

import argparse
import json

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    """Print one notification and acknowledge it."""
    body = await request.json()
    alert = body.get("alert", {})
    print(  # noqa: T201 - this program's whole job is to show deliveries
        f"[dev inbox] level {body.get('level')} {alert.get('severity')} "
        f"{alert.get('rule')}: {alert.get('summary')} ({alert.get('alert_id')})\n"
        f"{json.dumps(body, indent=2)}",
        flush=True,
    )
    return web.json_response({"received": True})


def main() -> None:
    """Serve the inbox until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
