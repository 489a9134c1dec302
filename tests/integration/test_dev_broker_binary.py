"""The development broker's binary on a machine that never ran it, by many processes at once.

The test workers of a fresh machine all start their broker within the same second; each
must get a binary it can run (a fresh machine's `make test` once had 269 setup errors,
EACCES, here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STARTERS = 8
# Without the lock, 5 starts in 64 failed here (8 rounds of 8), so three rounds catch
# its loss most of the time, at about half a second a round.
ROUNDS = 3
# Each process resolves the binary and runs it at once, as DevBroker.start does.
RESOLVE_AND_RUN = (
    "import subprocess, sys\n"
    "from devtools.tansu import broker_binary\n"
    "done = subprocess.run([broker_binary(), '--version'], capture_output=True)\n"
    "sys.exit(done.returncode)\n"
)


def _start_together(home: Path) -> list[int]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("CALF_TANSU_BIN", None)
    starters = [
        subprocess.Popen(  # noqa: S603 - this interpreter, our own code
            [sys.executable, "-c", RESOLVE_AND_RUN],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(STARTERS)
    ]
    return [starter.wait(timeout=120) for starter in starters]


def test_processes_starting_together_on_a_fresh_home_can_each_run_the_broker(
    tmp_path: Path,
) -> None:
    for round_ in range(ROUNDS):
        home = tmp_path / f"home-{round_}"
        codes = _start_together(home)

        assert codes == [0] * STARTERS, f"round {round_}"
        binaries = list(home.rglob("*tansu-*"))
        assert len(binaries) == 1, "one copy, no temporary file left behind"
        assert os.access(binaries[0], os.X_OK)
