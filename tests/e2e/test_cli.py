"""`safeguard alerts` against the three services as real processes, and `safeguard export`
of what they were sent, backtested: the same alerts, by id, as the risk service raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from devtools.stack import DEFAULT_POLICY, DEV_TOKEN, DevStack
from services.cli.api import AlertApi
from services.cli.backtest import backtest
from services.cli.main import app
from services.risk.policy import load_policy
from tests.fixtures.stack import Client, wait_until

pytestmark = pytest.mark.e2e

runner = CliRunner()
CHILD = "C-CLI-1"


def cli(stack: DevStack, *args: str, token: str | None = DEV_TOKEN) -> Any:
    env = {"SAFEGUARD_TOKEN": token} if token else {}
    return runner.invoke(app, [*args, "--url", stack.url("desk")], env=env)


def incident(event_id: str, child: str, ago: timedelta) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": f"INC-{event_id}",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": child, "present": True, "age": 8}],
        },
    }


def listed(stack: DevStack, *options: str) -> list[dict[str, Any]]:
    # Newest first: every status, as the list was before the queue's urgency order.
    result = cli(stack, "alerts", "ls", "--order", "raised", "--output", "json", *options)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    return [a for a in answer["alerts"] if a["subject_id"] == CHILD]


@pytest.fixture(scope="module")
def alert_id(stack: DevStack) -> str:
    """A backdated incident: its social-care referral is overdue on arrival."""
    code, body, _ = Client().request(
        "POST", f"{stack.url('ingest')}/v1/events", incident("cli-1", CHILD, timedelta(days=3))
    )
    assert code == 202, body
    found = wait_until(
        lambda: [a for a in listed(stack) if a["rule"] == "social-care-referral"], timeout=60
    )
    assert found, "no alert listed"
    return str(found[0]["alert_id"])


def test_ls_shows_the_alert_as_a_table(stack: DevStack, alert_id: str) -> None:
    result = cli(stack, "alerts", "ls", "--status", "open")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "SEVERITY",
        "RULE",
        "SUBJECT",
        "OVERDUE",
        "NEXT",
        "STATUS",
        "AREA",
        "ALERT",
    ]
    row = next(r.split() for r in rows if r.endswith(alert_id))
    assert row[:3] == ["high", "social-care-referral", f"child:{CHILD}"]
    assert "open" in row


def test_ls_filters_and_follows_pages(stack: DevStack, alert_id: str) -> None:
    result = cli(
        stack, "alerts", "ls", "--rule", "social-care-referral", "--order", "raised", "-o", "json"
    )
    assert [a["alert_id"] for a in json.loads(result.stdout)["alerts"]] == [alert_id]
    # The incident raised three deadline alerts at least (welfare check, referral, school).
    with AlertApi(stack.url("desk"), DEV_TOKEN, page=1) as api:
        paged = api.list({}, 3)
        everything = api.list({}, 100)
    assert len(paged) == 3
    assert len({a["alert_id"] for a in paged}) == 3
    assert [a["alert_id"] for a in paged] == [a["alert_id"] for a in everything[:3]]


def test_show_prints_the_alert_and_its_timeline(stack: DevStack, alert_id: str) -> None:
    result = cli(stack, "alerts", "show", alert_id)
    assert result.exit_code == 0, result.output
    assert f"alert:    {alert_id}" in result.stdout
    assert f"subject:  child:{CHILD}" in result.stdout
    assert "raised" in result.stdout
    as_json = cli(stack, "alerts", "show", alert_id, "-o", "json")
    assert json.loads(as_json.stdout)["alert"]["alert_id"] == alert_id


def test_show_of_an_unknown_alert_fails(stack: DevStack) -> None:
    result = cli(stack, "alerts", "show", "no-such-alert")
    assert result.exit_code == 1
    assert "404 not_found" in result.stderr


def test_without_a_token_the_api_says_401(stack: DevStack) -> None:
    result = cli(stack, "alerts", "ls", token=None)
    assert result.exit_code == 1
    assert result.stderr.startswith("401")


def test_ack_then_resolve(stack: DevStack, alert_id: str) -> None:
    result = cli(stack, "alerts", "ack", alert_id, "--by", "duty manager", "--note", "on it")
    assert result.exit_code == 0, result.output
    assert f"{alert_id}: accepted" in result.stdout
    assert wait_until(lambda: listed(stack, "--status", "acknowledged"))

    again = cli(stack, "alerts", "ack", alert_id)
    assert again.exit_code == 1
    assert "409 conflict" in again.stderr

    result = cli(
        stack,
        "alerts",
        "resolve",
        alert_id,
        "--reason",
        "fulfilled_elsewhere",
        "--note",
        "referral made by phone",
    )
    assert result.exit_code == 0, result.output
    assert wait_until(lambda: listed(stack, "--status", "resolved"))


def test_export_backtests_to_the_alerts_the_stack_raised(stack: DevStack, alert_id: str) -> None:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    result = runner.invoke(
        app,
        [
            "export",
            "--since",
            since,
            "--bootstrap",
            stack.bootstrap,
            "--topic",
            stack.topics.events,
        ],
    )
    assert result.exit_code == 0, result.output
    replayed = backtest(result.stdout.splitlines(), load_policy(DEFAULT_POLICY))
    # Every deadline of a three-day-old incident has passed: the stack has raised them all.
    raised = {(a["alert_id"], a["rule"]) for a in listed(stack) if a["rule"] != "risk-level"}
    assert (alert_id, "social-care-referral") in raised
    assert {
        (a.alert_id, a.rule)
        for a in replayed.alerts.values()
        if a.subject_id == CHILD and a.rule != "risk-level"
    } == raised
