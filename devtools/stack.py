"""The services as child processes, wired together: for `make run` and the tests.

Ingest, risk and notify always; desk pods when `desk_ports` names their ports (each a
`safeguard-desk` process on `database_url`, one projector group between them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devtools.broker import SESSION_SECONDS
from services.common.audit import AUDIT_TOPIC
from services.common.environment import development_environment
from services.common.kafka import Topics
from services.common.processes import spawn, stop

REPO = Path(__file__).resolve().parent.parent
DEV_TOKEN = "safeguard-dev-token"  # noqa: S105 - the documented development token
DEV_TOKENS_FILE = REPO / "config" / "dev-tokens.yaml"
# Signs webhook deliveries to the development inbox (the policy's `duty_desk` secret).
DEV_WEBHOOK_SECRET = "safeguard-dev-webhook-secret"  # noqa: S105 - development only
DEFAULT_POLICY = REPO / "policy" / "default.yaml"


class StackStartError(RuntimeError):
    """A service did not become ready in time."""


def desk_name(n: int) -> str:
    """Return the name of the nth desk pod: `desk`, `desk-2`, ..."""
    return "desk" if n == 0 else f"desk-{n + 1}"


@dataclass
class ServiceSpec:
    """One service process: its entry point, environment prefix and port."""

    name: str
    prefix: str
    port: int
    module: str = ""

    @property
    def entry(self) -> str:
        """Return the module the process runs (`services.<name>.main` by default)."""
        return self.module or f"services.{self.name}.main"


@dataclass
class DevStack:
    """Ingest, risk and notify against one broker, each a real process."""

    bootstrap: str
    data_dir: Path
    webhook_url: str
    ingest_port: int = 8080
    risk_port: int = 8081
    notify_port: int = 8082
    host: str = "127.0.0.1"
    topic_prefix: str = ""
    app_suffix: str = ""
    partitions: int = 4
    policy_file: Path = DEFAULT_POLICY
    smtp_port: int | None = None
    log_json: bool = False
    log_level: str = "INFO"
    # Level 1 waits this long to group the alerts of one event (policy `group_window`):
    # 0 sends each alert on its own at once, as the tests that follow single alerts
    # expect; None keeps the policy's (the console's tests and `make run`).
    group_window_seconds: float | None = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # Desk pods: one process per port, all on `database_url` (migrated beforehand).
    desk_ports: list[int] = field(default_factory=list)
    database_url: str | None = None
    output: IO[bytes] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    python: str = sys.executable

    @property
    def specs(self) -> list[ServiceSpec]:
        """Return the services in start order."""
        desks = [
            ServiceSpec(desk_name(n), "DESK_", port, "services.desk.main")
            for n, port in enumerate(self.desk_ports)
        ]
        return [
            ServiceSpec("notify", "NOTIFY_", self.notify_port),
            ServiceSpec("risk", "RISK_", self.risk_port),
            ServiceSpec("ingest", "INGEST_", self.ingest_port),
            *desks,
        ]

    @property
    def topics(self) -> Topics:
        """Return the topic names this stack uses."""
        defaults = Topics()
        return Topics(**{k: f"{self.topic_prefix}{v}" for k, v in defaults.model_dump().items()})

    @property
    def audit_topic(self) -> str:
        """Return the audit topic this stack uses (not in Topics yet: services' settings)."""
        return f"{self.topic_prefix}{AUDIT_TOPIC}"

    def topic_names(self) -> list[str]:
        """Return every topic the stack needs created, the audit topic included."""
        return [*self.topics.model_dump().values(), self.audit_topic]

    def url(self, name: str) -> str:
        """Return the base URL of a service."""
        port = {s.name: s.port for s in self.specs}[name]
        return f"http://{self.host}:{port}"

    def environment(self, spec: ServiceSpec) -> dict[str, str]:
        """Return the environment a service process starts with."""
        p = spec.prefix
        env = {
            **os.environ,
            # The development token and http:// receivers are refused outside it.
            **development_environment(),
            f"{p}HOST": self.host,
            f"{p}PORT": str(spec.port),
            f"{p}LOG_JSON": str(self.log_json).lower(),
            f"{p}LOG_LEVEL": self.log_level,
            f"{p}KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
        }
        for topic, name in self.topics.model_dump().items():
            env[f"{p}KAFKA__TOPICS__{topic.upper()}"] = name
        if p in {"INGEST_", "DESK_"}:
            # The services people and systems call: tokens, and a trail of who did what.
            env[f"{p}TOKENS_FILE"] = str(DEV_TOKENS_FILE)
            env[f"{p}AUDIT_TOPIC"] = self.audit_topic
        if p == "RISK_":
            # Direct producers' accepted and refused events are recorded there.
            env[f"{p}AUDIT_TOPIC"] = self.audit_topic
        if p == "DESK_":
            env |= self._desk_environment(p)
        elif spec.name != "ingest":
            env |= self._stream_environment(spec)
        if spec.name == "notify":
            env |= self._notify_environment(p)
        env.update(self.extra_env)
        return env

    def _desk_environment(self, p: str) -> dict[str, str]:
        if self.database_url is None:
            raise StackStartError("desk pods need a database_url")
        return {
            f"{p}DATABASE_URL": self.database_url,
            f"{p}PROJECTOR__GROUP_ID": f"safeguard-desk{self.app_suffix}",
            f"{p}PROJECTOR__SESSION_TIMEOUT_SECONDS": str(SESSION_SECONDS),
            # Notify's policy: the console's time zone, guidance and who is on duty.
            f"{p}POLICY_FILE": str(self.policy_file),
        } | self._smtp_environment(p)

    def _smtp_environment(self, p: str) -> dict[str, str]:
        if self.smtp_port is None:
            return {}
        return {
            f"{p}SMTP__HOST": "127.0.0.1",
            f"{p}SMTP__PORT": str(self.smtp_port),
            f"{p}SMTP__SECURITY": "none",
        }

    def _stream_environment(self, spec: ServiceSpec) -> dict[str, str]:
        p = spec.prefix
        data_dir = self.data_dir / spec.name
        data_dir.mkdir(parents=True, exist_ok=True)
        return {
            f"{p}APP_ID": f"safeguard-{spec.name}{self.app_suffix}",
            f"{p}STREAM__STORE": "memory://",
            f"{p}STREAM__DATA_DIR": str(data_dir),
            f"{p}STREAM__PARTITIONS": str(self.partitions),
            # Tansu: one record per batch keeps its end offsets right (see streams.py).
            f"{p}STREAM__PRODUCER_MAX_BATCH_SIZE": "1",
            f"{p}STREAM__SESSION_TIMEOUT_SECONDS": str(SESSION_SECONDS),
            f"{p}POLICY_FILE": str(self.policy_file),
        }

    def _notify_environment(self, p: str) -> dict[str, str]:
        env = {
            f"{p}WEBHOOK_URL": self.webhook_url,
            f"{p}WEBHOOK_SECRETS__DUTY_DESK": DEV_WEBHOOK_SECRET,
        }
        if self.desk_ports:
            # Links in messages open the desk's console.
            env[f"{p}PUBLIC_URL"] = self.url("desk")
        if self.group_window_seconds is not None:
            env[f"{p}GROUP_WINDOW_SECONDS"] = str(self.group_window_seconds)
        return env | self._smtp_environment(p)

    def start_service(self, name: str) -> None:
        """Start (or restart) one service process."""
        spec = next(s for s in self.specs if s.name == name)
        self.processes[name] = spawn(
            [self.python, "-m", spec.entry],
            env=self.environment(spec),
            stdout=self.output,
            cwd=REPO,
        )

    def start(self, *, timeout: float = 90.0) -> DevStack:
        """Start every service and wait until each answers `/readyz`."""
        for spec in self.specs:
            self.start_service(spec.name)
        for spec in self.specs:
            self.wait_ready(spec.name, timeout=timeout)
        return self

    def wait_ready(self, name: str, *, timeout: float = 90.0) -> None:
        """Poll a service's `/readyz` until it answers 200."""
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        last: Exception | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackStartError(f"{name} exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url(name)}/readyz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:  # noqa: PLR2004
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = exc  # not listening yet, or not ready (503): poll again
            time.sleep(0.25)
        raise StackStartError(f"{name} was not ready within {timeout}s: {last!r}")

    def stop_service(self, name: str) -> int:
        """Stop one service (SIGTERM, then SIGKILL) and return its exit code."""
        return stop(self.processes.pop(name))

    def stop(self) -> None:
        """Stop every service, ingest first so nothing new arrives, then any other process."""
        for spec in reversed(self.specs):
            if spec.name in self.processes:
                self.stop_service(spec.name)
        for name in list(self.processes):
            self.stop_service(name)
