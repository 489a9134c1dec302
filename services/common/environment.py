"""Development mode, explicit: `SAFEGUARD_ENV=development`, set by `make run` and the tests.

Whatever is convenient on a laptop (the published development token, a token that may
send for any source, a development alert-id secret, plain `http://` webhooks) is refused
unless this variable says so. Anything else, including the variable being absent, is
production: a forgotten variable makes a service strict, never lax.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

ENV_VARIABLE = "SAFEGUARD_ENV"
DEVELOPMENT = "development"


def is_development(environ: Mapping[str, str] | None = None) -> bool:
    """Tell whether this process runs in development mode."""
    values = os.environ if environ is None else environ
    return values.get(ENV_VARIABLE, "").strip().lower() == DEVELOPMENT


def development_environment() -> dict[str, str]:
    """Return the variable (as an environment fragment) that turns development mode on."""
    return {ENV_VARIABLE: DEVELOPMENT}


class UnsafeConfiguration(ValueError):
    """A setting acceptable in development mode only, met outside it; the message says which."""


def refuse_outside_development(problem: str) -> UnsafeConfiguration:
    """Return the error a service stops with, naming the problem and the way out."""
    return UnsafeConfiguration(
        f"refusing to start: {problem}. This is allowed only when {ENV_VARIABLE}={DEVELOPMENT}."
    )


def load_settings(cls: type[S], service: str) -> S:
    """Return the service's settings, or exit saying plainly what is wrong with them.

    Pydantic's own message quotes every input value, secrets included: only each
    problem's location and message reach stderr.
    """
    try:
        return cls()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        raise SystemExit(f"safeguard-{service}: {problems}") from None
