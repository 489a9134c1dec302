"""Handing a message to the mail relay: the one SMTP session notify and the desk share.

Standard library smtplib in the caller's thread (callers run it in a worker thread):
STARTTLS, implicit TLS and a login are settings, and a login without TLS is refused
when the settings are checked. `send` reports the outcome as a value: delivered, or
why not and whether trying again may help (SMTP 4xx and connection faults may; 5xx,
a refused login or a relay without STARTTLS will not).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

SMTP_PERMANENT = 500


class SmtpSettings(BaseModel):
    """How to reach the mail relay (`NOTIFY_SMTP__*`, `DESK_SMTP__*`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls` upgrades a plain connection; `tls` is implicit TLS (465)",
    )
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "safeguard-alerts@localhost"
    cafile: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)

    def check(self, prefix: str = "NOTIFY_") -> None:
        """Refuse a login over a connection without TLS (in every mode).

        A password over a plain connection is readable by anyone on the path. Checked
        here, not by a validator: pydantic's error would print the input, password
        included.
        """
        if self.username is not None and self.security == "none":
            raise SmtpConfigError(
                f"SMTP login needs TLS: set {prefix}SMTP__SECURITY to starttls or tls, "
                f"or remove {prefix}SMTP__USERNAME"
            )


class SmtpConfigError(ValueError):
    """The SMTP settings are unsafe (a login without TLS)."""


Failure = Literal["rejected", "server_error", "misconfigured", "timeout", "connection_error"]


@dataclass(frozen=True)
class Sent:
    """One attempt's outcome: delivered, or the failure, its detail and if it is final."""

    ok: bool
    permanent: bool = False
    failure: Failure | None = None
    detail: str | None = None


def send(settings: SmtpSettings, message: EmailMessage, time_limit: float) -> Sent:  # noqa: PLR0911 - one answer per fault
    """Hand `message` to the relay once (blocking)."""
    s = settings
    # Built only when used: loading the trust store costs about 25 ms of CPU a message.
    context = None if s.security == "none" else ssl.create_default_context(cafile=s.cafile)
    try:
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=time_limit, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=time_limit)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.username:
                password = s.password.get_secret_value() if s.password else ""
                smtp.login(s.username, password)
            refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return reply(max(codes, default=SMTP_PERMANENT))
    except (smtplib.SMTPNotSupportedError, smtplib.SMTPAuthenticationError) as exc:
        return Sent(ok=False, permanent=True, failure="misconfigured", detail=type(exc).__name__)
    except smtplib.SMTPResponseException as exc:
        return reply(exc.smtp_code)
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        failure: Failure = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
        return Sent(ok=False, failure=failure, detail=type(exc).__name__)
    except (OSError, smtplib.SMTPException) as exc:
        return Sent(ok=False, failure="connection_error", detail=type(exc).__name__)
    if refused:
        # Some addresses were refused: those people were not told, so it failed.
        return reply(max(code for code, _ in refused.values()))
    return Sent(ok=True, detail="smtp_250")


def reply(code: int) -> Sent:
    """Return the outcome of an SMTP reply code: 5xx is final, 4xx may pass."""
    if code >= SMTP_PERMANENT:
        return Sent(ok=False, permanent=True, failure="rejected", detail=f"smtp_{code}")
    return Sent(ok=False, failure="server_error", detail=f"smtp_{code}")
