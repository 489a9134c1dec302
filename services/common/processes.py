"""Child processes for development and tests: started in their own session, never orphaned."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux-only: the kernel sends SIGTERM to the child if the parent dies, even by SIGKILL,
    # so a killed `make run` or test session leaves no broker or service behind.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in a session of its own, so a terminal's Ctrl-C reaches only the parent.

    `user` runs it as another system user (PostgreSQL refuses to run as root).
    """
    return subprocess.Popen(  # noqa: S603 - argv is built by our own code
        list(argv),
        env=dict(env) if env is not None else None,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        cwd=cwd,
        user=user,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - runs before exec, no threads involved
    )


def stop(process: subprocess.Popen[bytes], *, timeout: float = 15.0) -> int:
    """Ask a child to stop (SIGTERM to its process group), then kill it if it will not."""
    if process.poll() is not None:
        return process.returncode
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return process.wait()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child's process group at once (crash tests)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()
