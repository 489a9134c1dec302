"""The image: pinned base, one command per service, non-root, a working healthcheck."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from devtools.broker import free_port
from tests.ops.helpers import COMMANDS, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(keyword: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [
        line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{keyword} ")
    ]


def healthcheck_script() -> str:
    match = re.search(
        r"<<'PY' /usr/local/bin/safeguard-healthcheck\n(.*?)\nPY\n", DOCKERFILE, re.DOTALL
    )
    assert match, "the healthcheck script is missing from the Dockerfile"
    return match.group(1)


def stages() -> list[tuple[str, str]]:
    """Return each stage's `(base, name)`, in order."""
    found = []
    for line in instructions("FROM"):
        base, _, name = line.partition(" AS ")
        found.append((base.strip(), name.strip()))
    return found


def test_base_image_is_pinned_python_3_11_slim() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[.\d]*-slim-\w+", DOCKERFILE, re.MULTILINE)
    earlier: set[str] = set()
    for base, name in stages():
        # Every stage starts from the pinned base, or from a stage above it.
        assert base == "${PYTHON_IMAGE}" or base in earlier, base
        earlier.add(name)


def test_the_default_target_is_the_runtime_without_development_tools() -> None:
    # `docker build .` builds the last stage: it must be the runtime as it is, not the
    # development stage that adds devtools/ for docker-compose.yml's inbox.
    names = [name for _, name in stages()]
    assert stages()[-1][0] == "runtime", stages()[-1]
    assert names.index("devtools") < len(names) - 1
    runtime = DOCKERFILE.split("AS runtime\n", 1)[1].split("\nFROM ", 1)[0]
    instructions_only = "\n".join(
        line for line in runtime.splitlines() if not line.lstrip().startswith("#")
    )
    assert "devtools" not in instructions_only
    assert "aiosmtpd" not in instructions_only


def test_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    users = instructions("USER")
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert "safeguard-healthcheck" in instructions("HEALTHCHECK")[-1]


def test_the_image_offers_every_service_command() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(COMMANDS) <= set(scripts)
    assert instructions("CMD")[-1].strip('[]"') in COMMANDS


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text()
    for copied in ("pyproject.toml", "README.md", "schemas/", "services/", "policy/default.yaml"):
        assert f"!{copied}" in ignore, copied


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def healthy_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def run_healthcheck(tmp_path: Path, env: dict[str, str]) -> int:
    script = tmp_path / "healthcheck.py"
    script.write_text(healthcheck_script())
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(script)], env=env, check=False, timeout=20
    ).returncode


def test_healthcheck_passes_when_healthz_answers(tmp_path: Path, healthy_port: int) -> None:
    assert run_healthcheck(tmp_path, {"RISK_PORT": str(healthy_port)}) == 0


def test_healthcheck_fails_when_nothing_answers(tmp_path: Path) -> None:
    assert run_healthcheck(tmp_path, {"HEALTHCHECK_PORT": str(free_port())}) == 1
