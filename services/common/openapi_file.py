"""An OpenAPI document generated from the code and committed beside it, drift-checked.

Each HTTP service builds its document (`document()`); this module writes it as the
committed file's text, tells whether the committed file has drifted, and is the
command line both `python -m services.<service>.openapi` entry points share.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Document = Callable[[], dict[str, Any]]


def render(document: Document) -> str:
    """Return the document as the committed file's text."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def drifted(document: Document, path: Path) -> bool:
    """Tell whether the committed file differs from the generated document."""
    return not path.exists() or path.read_text(encoding="utf-8") != render(document)


def main(argv: Sequence[str] | None, *, module: str, document: Document, committed: Path) -> int:
    """Write the document when it drifted (`--check`: exit 1 instead); return the status."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--check", action="store_true", help="exit 1 on drift, write nothing")
    parser.add_argument("--path", type=Path, default=committed)
    args = parser.parse_args(argv)
    if args.check:
        if drifted(document, args.path):
            print(  # noqa: T201 - CLI output
                f"{args.path} is out of date: run `python -m {module}`", file=sys.stderr
            )
            return 1
        return 0
    if drifted(document, args.path):
        args.path.write_text(render(document), encoding="utf-8")
        print(f"updated {args.path}")  # noqa: T201 - CLI output
    return 0


def metrics_and_document_paths() -> dict[str, Any]:
    """Return the path items every HTTP service serves alike: `/metrics`, `/openapi.json`."""
    return {
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
