"""Every alert has a runbook in docs/runbooks/, named after it and linked from it, with the
four parts an on-call engineer needs; every runbook names an alert that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import alert_rules
from tests.ops.helpers import RUNBOOKS, alert_names, all_rules

SECTIONS = ("## What it means for children", "## First checks", "## Mitigate", "## Escalate")
PAGES = sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def test_every_alert_has_a_runbook() -> None:
    missing = sorted(name for name in alert_names() if not (RUNBOOKS / f"{name}.md").is_file())
    assert not missing, f"alerts without docs/runbooks/<alert>.md: {missing}"


def test_every_runbook_names_an_existing_alert() -> None:
    assert PAGES
    orphans = sorted(p.name for p in PAGES if p.stem not in alert_names())
    assert not orphans, f"runbooks of no alert (procedures go in procedures/): {orphans}"


def test_every_alert_links_to_its_runbook_in_the_repository() -> None:
    base = alert_rules.load_spec().runbook_base_url.rstrip("/")
    assert base.endswith("/docs/runbooks")
    for rule in all_rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            assert url == f"{base}/{rule['alert']}.md", rule["alert"]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_a_runbook_says_what_it_means_what_to_check_how_to_mitigate_and_escalate(
    page: Path,
) -> None:
    text = page.read_text()
    assert text.startswith(f"# {page.stem}\n"), "the title is the alert's name"
    positions = [text.find(heading + "\n") for heading in SECTIONS]
    assert all(p > 0 for p in positions), f"missing one of {SECTIONS}"
    assert positions == sorted(positions), "sections out of order"
    checks = text[positions[1] : positions[2]]
    assert "```sh\n" in checks, "first checks need concrete commands"


@pytest.mark.parametrize(
    "page", [*sorted(RUNBOOKS.rglob("*.md"))], ids=lambda p: str(p.relative_to(RUNBOOKS))
)
def test_links_between_documents_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).resolve().exists(), f"{page.name} links to {target}"


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("see [a](missing.md) and [b](https://example.org/x.md#y)")
    assert LINK.findall(page.read_text()) == ["missing.md", "https://example.org/x.md"]
