"""Who may read and act on what, on the desk's pages; and no input gives a 5xx.

The services run as processes with the scoped tokens of `tests/fixtures/tokens.py`
(no development token). Two backdated incidents raise alerts for a child in `north` and
one in `south`. Every route is called by every caller of the matrix: no token, an
unknown token, tokens without the route's role, tokens of the other area, tokens allowed
to. Then hypothesis throws paths and bodies at the pages: never a 5xx.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.stack import DevStack
from services.common.auth import Role
from tests.fixtures.broker import produce
from tests.fixtures.stack import Client, StackFactory, wait_until
from tests.fixtures.tokens import CALLERS, TokenSet

pytestmark = pytest.mark.e2e

TOKENS = TokenSet.matrix()


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> DevStack:
    tokens = TOKENS.write(tmp_path_factory.mktemp("authz") / "tokens.yaml")
    return stack_factory(extra_env=TOKENS.stack_env(tokens))


def incident(child_id: str, area: str) -> tuple[bytes, bytes]:
    event = {
        "specversion": "1.0",
        "id": f"authz-{child_id}",
        "source": "urn:safeguard:source:control-room",
        "type": "incident.reported",
        "time": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "incident_id": f"INC-{child_id}",
            "category": "domestic_abuse",
            "area": area,
            "children": [{"child_id": child_id, "present": True, "age": 9}],
        },
    }
    return child_id.encode(), json.dumps(event).encode()


@pytest.fixture(scope="module")
def alerts(stack: DevStack) -> dict[str, dict[str, Any]]:
    """One open alert per area, found through a token that sees every area."""
    tag = uuid.uuid4().hex[:6]
    children = {"north": f"C-N-{tag}", "south": f"C-S-{tag}"}
    produce(stack.bootstrap, stack.topics.events, [incident(c, a) for a, c in children.items()])
    client = Client(token=None)
    found: dict[str, dict[str, Any]] = {}

    def listed() -> bool:
        code, body, _ = client.request(
            "GET",
            f"{stack.url('desk')}/v1/alerts?limit=500",
            headers=TOKENS.header("duty-all"),
        )
        assert code == 200, body
        for area, child in children.items():
            for alert in body["alerts"]:
                if alert["subject_id"] == child and alert["rule"] == "social-care-referral":
                    found[area] = alert
        return len(found) == len(children)

    assert wait_until(listed, timeout=60), f"alerts not raised: {found}"
    return found


def call(
    stack: DevStack, caller: str | None, method: str, service: str, path: str, *, body: Any = None
) -> tuple[int, Any]:
    code, answer, _ = Client(token=None).request(
        method, f"{stack.url(service)}{path}", body, headers=TOKENS.header(caller)
    )
    return code, answer


@pytest.mark.parametrize("caller", CALLERS)
def test_reads_answer_each_caller_as_its_scopes_say(
    stack: DevStack, alerts: dict[str, dict[str, Any]], caller: str | None
) -> None:
    north = alerts["north"]
    routes = [
        ("desk", f"/v1/children/{north['subject_id']}", "north"),
        ("desk", f"/v1/alerts/{north['alert_id']}", "north"),
        ("desk", "/v1/alerts", None),
    ]
    for service, path, area in routes:
        code, body = call(stack, caller, "GET", service, path)
        expected = TOKENS.expected(caller, Role.READ, area=area)
        assert code == expected, (caller, path, code, body)
        if code == 403:
            assert body["error"] == "forbidden"
            assert body["message"], body
        if code == 401:
            assert body["error"] == "unauthenticated"


@pytest.mark.parametrize("caller", CALLERS)
def test_lists_show_only_the_callers_areas(
    stack: DevStack, alerts: dict[str, dict[str, Any]], caller: str | None
) -> None:
    if TOKENS.expected(caller, Role.READ) != 200:
        return
    code, body = call(stack, caller, "GET", "desk", "/v1/alerts?limit=500")
    assert code == 200, body
    seen = {a["alert_id"] for a in body["alerts"]}
    for area, alert in alerts.items():
        visible = TOKENS.expected(caller, Role.READ, area=area) == 200
        assert (alert["alert_id"] in seen) == visible, (caller, area)


# Order matters within an alert: acknowledging moves it out of `open`. Each caller acts on
# its own fresh view, so a refusal is always checked before anyone allowed has acted.
@pytest.mark.parametrize("role", [Role.ACKNOWLEDGE, Role.RESOLVE])
def test_acting_answers_each_caller_as_its_scopes_say(
    stack: DevStack, alerts: dict[str, dict[str, Any]], role: Role
) -> None:
    action = "ack" if role is Role.ACKNOWLEDGE else "resolve"
    allowed_callers = []
    for area, alert in alerts.items():
        for caller in CALLERS:
            expected = TOKENS.expected(caller, role, area=area)
            if expected == 200:
                allowed_callers.append((caller, alert))
                continue
            code, body = call(
                stack, caller, "POST", "desk", f"/v1/alerts/{alert['alert_id']}/{action}", body={}
            )
            assert code == expected, (caller, area, role, code, body)
    # Then those allowed: the first is accepted, later ones find the alert moved on.
    for caller, alert in allowed_callers:
        code, body = call(
            stack, caller, "POST", "desk", f"/v1/alerts/{alert['alert_id']}/{action}", body={}
        )
        assert code in {202, 409}, (caller, role, code, body)


path_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segment=path_text)
def test_any_path_segment_is_never_a_server_error(stack: DevStack, segment: str) -> None:
    quoted = urllib.parse.quote(segment, safe="")
    for service, path in (
        ("desk", f"/v1/children/{quoted}"),
        ("desk", f"/v1/alerts/{quoted}"),
        ("desk", f"/v1/alerts?cursor={quoted}&status={quoted}&limit={quoted}"),
    ):
        code, body = call(stack, "duty-all", "GET", service, path)
        assert code < 500, (path, code, body)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values, raw=st.binary(max_size=200))
def test_any_action_body_is_never_a_server_error(
    stack: DevStack, alerts: dict[str, dict[str, Any]], body: Any, raw: bytes
) -> None:
    path = f"{stack.url('desk')}/v1/alerts/{alerts['south']['alert_id']}/ack"
    headers = TOKENS.header("duty-north")  # wrong area: refused, whatever the body
    for payload in (json.dumps(body).encode(), raw, b"[" * 5000, b"1" * 5000):
        code, answer, _ = Client(token=None).request("POST", path, raw=payload, headers=headers)
        assert code < 500, (payload[:40], code, answer)
    ok_headers = TOKENS.header("duty-south")
    big = b'{"note": ' + b"9" * 5000 + b"}"
    for payload in (json.dumps(body).encode(), raw, big, b"[" * 5000):
        code, answer, _ = Client(token=None).request("POST", path, raw=payload, headers=ok_headers)
        assert code < 500, (payload[:40], code, answer)
