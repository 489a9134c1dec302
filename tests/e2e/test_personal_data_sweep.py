"""Personal-data sweep: free text a client controls never comes out anywhere.

A marker that reads like personal data (a name and a date of birth) is put in every
place a sender controls at the door: the envelope attributes, unknown field names and
values, data fields, binary-mode headers and their names, the media type, the token,
the path; the read and act pages' paths, queries and bodies; and straight onto the
events topic, as a control room on Kafka could. Every such request is refused (or, for
a list filter, answered without it), and then the 4xx bodies, the four services' logs, their
metrics, the dead-letter reasons, and every webhook and email body are searched: the
marker is in none of them.

A valid event then raises an alert that reaches the webhook and an email: its
`subject` (an identifier, accepted) is copied nowhere. Both carry the alert's subject
id, the pseudonymous reference the sending systems use (a duty manager must
know whom an alert is about), and nothing else the sender wrote.

Dead-letter records keep the rejected record's bytes in `value` by design (to repair and
replay it); the sweep checks their reasons (`errors`), where nothing of the input may be.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from devtools.stack import DEFAULT_POLICY, DEV_TOKEN, DevStack
from tests.fixtures.broker import produce, read_all
from tests.fixtures.smtp import SmtpInbox
from tests.fixtures.stack import Client, StackFactory, wait_until
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

TAG = "ZQXJ"  # what is searched for: no service text contains it
MARKER = f"{TAG} Jane Doe 2011-04-01"
WORD = f"{TAG}JaneDoe20110401"  # the same, as a field or header name can spell it
SOURCE = "urn:safeguard:source:sweep"
EVENTS = "/v1/events"
BATCH = "/v1/events/batch"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(child_id: str = "C-SWEEP-1", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"sweep-{uuid.uuid4().hex[:10]}",
        "source": SOURCE,
        "type": "incident.reported",
        "time": iso(timedelta(days=-3)),
        "data": {
            "incident_id": "INC-SWEEP-1",
            "category": "domestic_abuse",
            "area": "north",
            "children": [{"child_id": child_id, "present": True, "age": 8}],
        },
    }
    return event | changes


def with_data(**changes: Any) -> dict[str, Any]:
    event = incident()
    event["data"] = event["data"] | changes
    return event


def with_child(**changes: Any) -> dict[str, Any]:
    event = incident()
    event["data"]["children"][0] |= changes
    return event


# Every place in a structured-mode body a sender fills in: each gets the marker.
BODIES: dict[str, dict[str, Any]] = {
    "id": incident(id=MARKER),
    "subject": incident(subject=MARKER),
    "source": incident(source=MARKER),
    "type": incident(type=MARKER),
    "time": incident(time=MARKER),
    "specversion": incident(specversion=MARKER),
    "datacontenttype": incident(datacontenttype=MARKER),
    "dataschema": incident(dataschema=MARKER),
    "unknown attribute name": incident(**{WORD: 1}),
    "unknown attribute value": incident(extension=MARKER),
    "unknown data field name": with_data(**{MARKER: 1}),
    "unknown data field value": with_data(note=MARKER),
    "data id": with_data(incident_id=MARKER),
    "data enum": with_data(category=MARKER),
    "data area": with_data(area=MARKER),
    "child id": with_child(child_id=MARKER),
    "child bool": with_child(present=MARKER),
    "child int": with_child(age=MARKER),
    "unknown child field": with_child(**{MARKER: MARKER}),
    "data not an object": incident(data=MARKER),
}


def sweep_policy(folder: Path) -> Path:
    """The default policy, with level 1 going to the webhook and an email at once."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["routing"]["default"]["duty-manager"] = ["duty-desk", "senior-managers"]
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture(scope="module")
def sweep(
    stack_factory: StackFactory, smtp_inbox: SmtpInbox, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DevStack, Path]:
    folder = tmp_path_factory.mktemp("sweep")
    stack = stack_factory(
        policy_file=sweep_policy(folder),
        smtp_port=smtp_inbox.port,
        # DEBUG: whatever any service would ever write is searched too.
        log_level="DEBUG",
    )
    assert stack.output is not None
    return stack, Path(stack.output.name)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    code, reply, _ = Client(token=None).request("POST", url, raw=body, headers=headers)
    return code, reply if isinstance(reply, str) else json.dumps(reply)


def door_replies(stack: DevStack) -> list[tuple[str, int, str]]:
    """Send the marker in every place of a request to ingest; return each reply."""
    ingest = stack.url("ingest")
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    structured = auth | {"Content-Type": "application/cloudevents+json"}
    replies: list[tuple[str, int, str]] = []

    for place, event in BODIES.items():
        replies.append((place, *post(f"{ingest}{EVENTS}", json.dumps(event).encode(), structured)))
        batch = json.dumps([incident(), event]).encode()
        headers = auth | {"Content-Type": "application/cloudevents-batch+json"}
        replies.append((f"batch {place}", *post(f"{ingest}{BATCH}", batch, headers)))

    binary = auth | {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-source": SOURCE,
        "ce-type": "child.found",
        "ce-time": iso(timedelta(hours=-1)),
    }
    data = json.dumps({"episode_id": "EP-1", "child_id": "C-SWEEP-2", "area": "north"}).encode()
    marker_header = quote(MARKER, safe="")
    for place, headers in {
        "ce-id": binary | {"ce-id": marker_header},
        "ce-subject": binary | {"ce-id": "b-1", "ce-subject": marker_header},
        "ce- header name": binary | {"ce-id": "b-2", f"ce-{WORD.lower()}": "x"},
        "ce-source": binary | {"ce-id": "b-3", "ce-source": marker_header},
    }.items():
        replies.append((place, *post(f"{ingest}{EVENTS}", data, headers)))
    body = json.dumps(incident()).encode()
    replies += [
        ("content type", *post(f"{ingest}{EVENTS}", body, auth | {"Content-Type": MARKER})),
        (
            "charset",
            *post(
                f"{ingest}{EVENTS}",
                body,
                auth | {"Content-Type": f"application/json; charset={WORD}"},
            ),
        ),
        (
            "token",
            *post(
                f"{ingest}{EVENTS}",
                body,
                {"Authorization": f"Bearer {MARKER}", "Content-Type": "application/json"},
            ),
        ),
        ("path", *post(f"{ingest}{EVENTS}/{quote(MARKER)}", body, structured)),
        ("json", *post(f"{ingest}{EVENTS}", f'{{"id": "{MARKER}", '.encode(), structured)),
    ]
    return replies


def page_replies(stack: DevStack, alert_id: str) -> list[tuple[str, int, str]]:
    """Send the marker in the read and act pages' paths, queries and bodies."""
    desk = stack.url("desk")
    marked = quote(MARKER)
    client = Client()
    replies = [
        ("child path", *client.request("GET", f"{desk}/v1/children/{marked}")[:2]),
        ("alert path", *client.request("GET", f"{desk}/v1/alerts/{marked}")[:2]),
        ("ack path", *client.request("POST", f"{desk}/v1/alerts/{marked}/ack", {})[:2]),
    ]
    for name in ("status", "rule", "severity", "area", "limit", "cursor"):
        url = f"{desk}/v1/alerts?{name}={marked}"
        replies.append((f"query {name}", *client.request("GET", url)[:2]))
    for place, body in {
        "unknown body field": {MARKER: 1},
        "by with a control character": {"by": f"{MARKER}\n"},
        "by not a string": {"by": [MARKER]},
    }.items():
        url = f"{desk}/v1/alerts/{alert_id}/ack"
        replies.append((place, *client.request("POST", url, body)[:2]))
    return [(place, status, json.dumps(reply)) for place, status, reply in replies]


def test_free_text_is_refused_and_never_comes_out(
    sweep: tuple[DevStack, Path], webhook: WebhookReceiver, smtp_inbox: SmtpInbox
) -> None:
    stack, log_path = sweep
    ingest = stack.url("ingest")
    structured = {
        "Authorization": f"Bearer {DEV_TOKEN}",
        "Content-Type": "application/cloudevents+json",
    }
    replies = door_replies(stack)
    for place, status, reply in replies:
        assert 400 <= status < 500, (place, status, reply)
        assert TAG not in reply, (place, reply)

    # Straight onto the topic, as a control room on Kafka could: the risk service
    # dead-letters what it cannot accept.
    raw = [json.dumps(event).encode() for event in BODIES.values()] + [MARKER.encode()]
    produce(stack.bootstrap, stack.topics.events, [(b"k", value) for value in raw])

    # One valid event with an identifier subject raises an alert (its referral is
    # overdue on arrival): webhook and email carry the alert and its subject id, never
    # the CloudEvent's `subject`.
    valid = incident(child_id="C-SWEEP-9", subject=f"{TAG}-SUBJECT-1")
    status, reply = post(f"{ingest}{EVENTS}", json.dumps(valid).encode(), structured)
    assert status == 202, reply
    hooks = webhook.wait_for(lambda b: b["alert"].get("child_id") == "C-SWEEP-9", timeout=60)
    assert hooks
    mails = smtp_inbox.wait_for(
        lambda m: hooks[0]["alert"]["alert_id"] in str(m.message), timeout=60
    )
    assert mails

    def dead_letters() -> list[dict[str, Any]] | None:
        records = read_all(stack.bootstrap, stack.topics.deadletter)
        return [json.loads(r.value) for r in records] if len(records) >= len(raw) else None

    letters = wait_until(dead_letters, timeout=60)
    assert letters, "the invalid records were not all dead-lettered"

    # The read and act pages: free text in the path, the query and the body.
    replies = page_replies(stack, hooks[0]["alert"]["alert_id"])
    for place, status, reply in replies:
        assert status < 500, (place, status, reply)
        assert TAG not in reply, (place, reply)

    # --- the sweep ---------------------------------------------------------------------
    for letter in letters:
        assert TAG not in json.dumps(letter["errors"]), letter["errors"]
        assert "Jane" not in json.dumps(letter["errors"])
    for hook_body in webhook.raw:
        assert TAG not in hook_body.decode()
    for mail in smtp_inbox.messages:
        text = mail.message.as_string()
        assert TAG not in text
        for part in mail.message.walk():
            if part.get_content_maintype() == "text":
                assert TAG not in part.get_content()
    # The subject id, a pseudonymous reference, is what the email names the child by.
    assert any(
        "child C-SWEEP-9"
        in (m.message.get_body(preferencelist=("plain",)) or m.message).get_content()
        for m in mails
    )
    for name in ("ingest", "risk", "notify", "desk"):
        code, metrics, _ = Client().request("GET", f"{stack.url(name)}/metrics")
        assert code == 200
        assert TAG not in str(metrics), name
    logs = log_path.read_text(errors="replace")
    assert "events_accepted" in logs  # the logs are there to search
    assert TAG not in logs
    assert "Jane Doe" not in logs
