"""Generate the committed JSON Schema files from the models, or check them for drift.

    python -m schemas.generate            # (re)write schemas/json/
    python -m schemas.generate --check    # exit 1 if the files differ from the models

The models are the source of truth; the JSON files are what other teams read, so a
test fails when they drift apart.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from schemas.alerts import AlertRaisedEvent, AlertResolvedEvent
from schemas.audit import AuditEvent
from schemas.deadletter import DeadLetter
from schemas.envelope import AlertType, Envelope
from schemas.events import ENVELOPE_TYPES
from schemas.notifications import NOTIFICATION_TYPES
from schemas.outcomes import OutcomeEvent
from schemas.views import AlertViewEvent, ChildViewEvent

__all__ = ["DEFAULT_OUTPUT_DIR", "drift", "main", "render", "write"]

DEFAULT_OUTPUT_DIR = Path(__file__).parent / "json"

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _models() -> dict[str, type[BaseModel]]:
    """File stem -> model whose JSON Schema goes in that file."""
    return {
        "envelope": Envelope,
        **ENVELOPE_TYPES,
        AlertType.RAISED: AlertRaisedEvent,
        AlertType.RESOLVED: AlertResolvedEvent,
        **NOTIFICATION_TYPES,
        "deadletter": DeadLetter,
        "audit": AuditEvent,
        "outcome": OutcomeEvent,
        "alert.view": AlertViewEvent,
        "child.view": ChildViewEvent,
    }


def _dump(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Return file name -> content for every schema file, deterministically."""
    files: dict[str, str] = {}
    for stem, model in _models().items():
        schema = {
            "$schema": _DIALECT,
            "$id": f"urn:safeguard:schema:{stem}",
            **model.model_json_schema(mode="validation"),
        }
        files[f"{stem}.json"] = _dump(schema)
    return files


def drift(output_dir: Path = DEFAULT_OUTPUT_DIR) -> list[str]:
    """List how `output_dir` differs from `render()`; empty when it is up to date."""
    expected = render()
    present = {path.name for path in output_dir.glob("*.json")}
    problems = [f"missing: {name}" for name in sorted(expected.keys() - present)]
    problems += [
        f"drifted: {name}"
        for name in sorted(expected.keys() & present)
        if (output_dir / name).read_text(encoding="utf-8") != expected[name]
    ]
    problems += [f"extra: {name}" for name in sorted(present - expected.keys())]
    return problems


def write(output_dir: Path = DEFAULT_OUTPUT_DIR) -> list[str]:
    """Bring `output_dir` up to date; return the names of files written or removed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    expected = render()
    changed: list[str] = []
    for name, content in expected.items():
        path = output_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(name)
    for path in sorted(output_dir.glob("*.json")):
        if path.name not in expected:
            path.unlink()
            changed.append(path.name)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.generate")
    parser.add_argument(
        "--check",
        action="store_true",
        help="report drift and exit 1 instead of writing",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="directory of the schema files (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.output_dir)
        for problem in problems:
            print(problem, file=sys.stderr)  # noqa: T201 - CLI output
        if problems:
            print(  # noqa: T201 - CLI output
                "schemas out of date: run `python -m schemas.generate`",
                file=sys.stderr,
            )
        return 1 if problems else 0
    for name in write(args.output_dir):
        print(f"updated {name}")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
