"""A real browser for the console tests: Debian's chromium driven by Playwright.

Playwright is launched with the system's executable (no browser download): `make test`
installs Debian's `chromium` (the Makefile's `tools` target). axe-core comes from the
`axe.min.js` that the pinned axe-playwright-python package ships.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_SOURCE = resources.files("axe_playwright_python").joinpath("axe.min.js").read_text()
# WCAG 2.0, 2.1 and 2.2, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is; return its serious and critical violations."""
    # Evaluated through the DevTools protocol, so the console's CSP (scripts from 'self'
    # only) does not stop it, and the page under test is not loosened for the check.
    page.evaluate(AXE_SOURCE)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
