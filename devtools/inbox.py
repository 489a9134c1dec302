"""A development inbox that prints what notify delivers by webhook and by email.

`make run` starts it so every notification shows on the console. It uses aiosmtpd, a
development dependency.
"""

from __future__ import annotations

import argparse
import json
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


async def receive(request: web.Request) -> web.Response:
    """Print one webhook notification and acknowledge it."""
    body = await request.json()
    alert = body.get("alert", {})
    print(  # noqa: T201 - this program's whole job is to show deliveries
        f"[dev inbox] webhook: {alert.get('severity')} {alert.get('rule')}: "
        f"{alert.get('summary')} ({alert.get('alert_id')})\n{json.dumps(body, indent=2)}",
        flush=True,
    )
    return web.json_response({"received": True})


class MailPrinter:
    """aiosmtpd handler printing each message's recipients, subject and text."""

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        """Print one email and accept it."""
        message: Any = message_from_bytes(envelope.original_content or b"", policy=default_policy)
        text = message.get_body(preferencelist=("plain",))
        print(  # noqa: T201 - this program's whole job is to show deliveries
            f"[dev inbox] email to {', '.join(envelope.rcpt_tos)}: {message['subject']}\n"
            f"{text.get_content() if text else ''}",
            flush=True,
        )
        return "250 Message accepted"


def main() -> None:
    """Serve the inbox until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--smtp-port", type=int, default=8025)
    args = parser.parse_args()
    smtp = Controller(MailPrinter(), hostname=args.host, port=args.smtp_port)
    smtp.start()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    try:
        web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
