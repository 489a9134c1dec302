"""Dead-letter repair end to end: an event a rule raises on is dead-lettered, the rule is
fixed by a policy change, the event is replayed and raises its alerts once; replayed
again, it changes nothing.

The rule that raises: the school-notification deadline is computed in the policy's
timezone, and a policy naming a timezone that does not exist loads (nothing checks the
name) but makes the rule raise on every domestic-abuse incident with a school-age child.
Risk dead-letters such an event as `processing_error`. The fix is the policy with a
real timezone; risk restarts with it.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devtools.stack import DEFAULT_POLICY, DevStack
from services.cli.main import app
from tests.fixtures.broker import read_all
from tests.fixtures.stack import Client, StackFactory, wait_until
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

runner = CliRunner()
CHILD = "C-DLR-1"
RULES = {"social-care-referral", "welfare-check", "school-notification"}


@pytest.fixture(scope="module")
def broken_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = DEFAULT_POLICY.read_text()
    assert "timezone: Europe/London" in text
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(text.replace("timezone: Europe/London", "timezone: Europe/Atlantis"))
    return path


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, broken_policy: Path) -> DevStack:
    # Only risk reads the broken policy: notify and the desk keep working meanwhile.
    return stack_factory(
        policy_file=broken_policy,
        extra_env={
            "NOTIFY_POLICY_FILE": str(DEFAULT_POLICY),
            "DESK_POLICY_FILE": str(DEFAULT_POLICY),
        },
    )


def deadletter(stack: DevStack, *args: str) -> Any:
    result = runner.invoke(
        app,
        [
            "deadletter",
            *args,
            "--bootstrap",
            stack.bootstrap,
            "--topic",
            stack.topics.deadletter,
            *(["--audit-topic", stack.audit_topic] if args[0] != "ls" else []),
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "json" in args else result.stdout


def told(webhook: WebhookReceiver) -> Counter[str]:
    """Return how many level-1 notifications of each rule reached the duty desk for CHILD."""
    bodies = webhook.wait_for(
        lambda b: b.get("alert", {}).get("child_id") == CHILD and b.get("purpose") == "alert",
        timeout=0,
    )
    return Counter(b["alert"]["rule"] for b in bodies)


def duplicates_dropped(stack: DevStack) -> float:
    with urllib.request.urlopen(f"{stack.url('risk')}/metrics", timeout=10) as answer:  # noqa: S310
        for line in answer.read().decode().splitlines():
            if line.startswith("safeguard_risk_duplicates_dropped_total "):
                return float(line.split()[1])
    return 0.0


def test_a_dead_lettered_event_replayed_after_the_fix_raises_its_alerts_once(
    stack: DevStack, webhook: WebhookReceiver
) -> None:
    incident = {
        "specversion": "1.0",
        "id": "dlr-inc-1",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        # A month ago: every obligation overdue, school holidays or not.
        "time": (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": "INC-DLR-1",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": CHILD, "present": True, "age": 8}],
        },
    }
    code, body, _ = Client().request("POST", f"{stack.url('ingest')}/v1/events", incident)
    assert code == 202, body

    # Risk cannot apply it: dead-lettered as a processing error, nothing raised.
    found = wait_until(
        lambda: deadletter(stack, "ls", "--key", CHILD, "--output", "json"), timeout=60
    )
    assert [item["reason"] for item in found] == ["processing_error"], found
    (letter,) = found
    assert letter["event"]["id"] == "dlr-inc-1"
    assert letter["replayable"] is True
    assert told(webhook) == Counter()

    # The fix: the policy with a real timezone; risk restarts with it.
    stack.policy_file = DEFAULT_POLICY
    stack.stop_service("risk")
    stack.start_service("risk")
    stack.wait_ready("risk")

    replayed = deadletter(stack, "replay", letter["ref"], "--by", "ops-test", "--output", "json")
    assert [r["problem"] for r in replayed] == [None]
    assert wait_until(lambda: set(told(webhook)) == RULES, timeout=90), told(webhook)

    # Replayed again (the same bytes): risk drops the repeat, nothing is raised again.
    before = duplicates_dropped(stack)
    deadletter(stack, "replay", "--key", CHILD, "--reason", "processing_error", "--by", "ops-test")
    assert wait_until(lambda: duplicates_dropped(stack) > before, timeout=60)
    assert told(webhook) == Counter(dict.fromkeys(RULES, 1))

    def listed() -> list[str] | None:
        alerts = Client().request("GET", f"{stack.url('desk')}/v1/alerts?limit=100")[1]["alerts"]
        rules = sorted(a["rule"] for a in alerts if a["subject_id"] == CHILD)
        return rules if len(rules) >= len(RULES) else None

    assert wait_until(listed, timeout=30) == sorted(RULES)
    # Both replays are on the audit trail, by the dead letter's position.
    audits = [json.loads(r.value)["data"] for r in read_all(stack.bootstrap, stack.audit_topic)]
    replays = [a for a in audits if a["action"] == "deadletter.replayed"]
    assert len(replays) == 2
    assert {a["actor"] for a in replays} == {"ops-test"}
    assert {a["record"]["topic"] for a in replays} == {stack.topics.deadletter}
