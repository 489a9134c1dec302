"""kafka-python clients built so that a failed bootstrap leaves nothing running.

kafka-python 3.0 starts a consumer's or admin client's I/O thread before its constructor
bootstraps, and leaves it running, reconnecting for ever, when the bootstrap fails. Every
retry of a constructor while the broker is away (a readiness probe, a start-up wait) would
otherwise leave one more thread behind.
"""

from __future__ import annotations

from typing import TypeVar

C = TypeVar("C")


def bootstrapped(kind: type[C], **options: object) -> C:
    """Return a `kind` client built with `options`, or raise with its I/O thread stopped."""
    client = kind.__new__(kind)
    try:
        client.__init__(**options)  # type: ignore[misc]
    except BaseException:
        inner, net = getattr(client, "_client", None), getattr(client, "_net", None)
        if inner is not None:
            inner.close()
        if net is not None:
            net.stop()
        raise
    return client
