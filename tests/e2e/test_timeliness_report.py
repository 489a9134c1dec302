"""The timeliness report end to end: risk's outcomes on the broker, the desk's report of
them (JSON, CSV, HTML, area scopes, audit), `safeguard report timeliness`, a second desk
pod answering the same report, and the report kept over a restart of the desk.

Real processes (devtools/stack.py) against the session broker and PostgreSQL. Four referrals of the
`social-care-referral` rule (24 h after a `neglect` incident, the only rule it raises):

| child | area | what happens | outcome records |
|---|---|---|---|
| C-TR-ONTIME | north | incident 1 h ago, referral now (in time, and recorded in time) | opened, met (early) |
| C-TR-LATE | north | incident 30 days ago, referral now | opened, breached, met (29 days late) |
| C-TR-OPEN | north | incident 2 days ago, nothing since | opened, breached |
| C-TR-HAND | south | incident 5 days ago, its alert closed by hand | opened, breached |
"""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from devtools.broker import free_port
from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE, DevStack, ServiceSpec
from services.cli.main import app as cli_app
from services.common.processes import spawn, stop
from tests.fixtures import loopback
from tests.fixtures.broker import produce, read_all
from tests.fixtures.events import (
    decisions_after_the_period_policy,
    reported_incident,
    shared_referral,
)
from tests.fixtures.stack import Client, StackFactory, wait_until
from tests.fixtures.tokens import TokenSet

pytestmark = pytest.mark.e2e

RULE = "social-care-referral"
NOW = datetime.now(UTC)
CHILDREN = ("C-TR-ONTIME", "C-TR-LATE", "C-TR-OPEN", "C-TR-HAND")
PERIOD = {
    "from": (NOW - timedelta(days=60)).date().isoformat(),
    "to": (NOW + timedelta(days=2)).date().isoformat(),
}
# Figures that do not move with the clock (lateness of an open obligation grows).
STABLE = ("rule", "area", "due", "met_on_time", "met_late", "open_overdue", "closed_by_hand")


def at(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(child: str, area: str, ago: timedelta) -> dict[str, Any]:
    return reported_incident(f"tr-inc-{child}", child, at(ago), area=area)


def referral(child: str, ago: timedelta) -> dict[str, Any]:
    return shared_referral(f"tr-ref-{child}", child, at(ago))


TOKENS = TokenSet.matrix()


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> DevStack:
    """The whole system with the development token and the scoped tokens of the matrix."""
    folder = tmp_path_factory.mktemp("timeliness")
    tokens = TOKENS.write(folder / "tokens.yaml")
    document = yaml.safe_load(tokens.read_text())
    document["tokens"] += yaml.safe_load(DEV_TOKENS_FILE.read_text())["tokens"]
    tokens.write_text(yaml.safe_dump(document))
    return stack_factory(
        extra_env=TOKENS.stack_env(tokens),
        # The report's period ends in two days: the referrals' decisions fall after it.
        policy_file=decisions_after_the_period_policy(folder),
    )


def report(url: str, token: str = DEV_TOKEN, **params: str) -> tuple[int, Any, dict[str, str]]:
    query = "&".join(f"{k}={v}" for k, v in {**PERIOD, **params}.items())
    return Client(token).request("GET", f"{url}/v1/reports/timeliness?{query}")


def stable(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: row[k] for k in STABLE} for row in body["rows"]]


EXPECTED = [
    {
        "rule": RULE,
        "area": "north",
        "due": 3,
        "met_on_time": 1,
        "met_late": 1,
        "open_overdue": 1,
        "closed_by_hand": 0,
    },
    {
        "rule": RULE,
        "area": "south",
        "due": 1,
        "met_on_time": 0,
        "met_late": 0,
        "open_overdue": 0,
        "closed_by_hand": 1,
    },
]


@pytest.fixture(scope="module")
def outcomes(stack: DevStack, kafka_bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """Send the four cases, close one alert by hand; return each child's outcome records."""
    events = [
        # On time, and recorded in time: a fulfilment sent after the deadline with an
        # earlier `time` is a backdated one, never counted on time.
        incident("C-TR-ONTIME", "north", timedelta(hours=1)),
        referral("C-TR-ONTIME", timedelta(0)),
        incident("C-TR-LATE", "north", timedelta(days=30)),
        referral("C-TR-LATE", timedelta(0)),
        incident("C-TR-OPEN", "north", timedelta(days=2)),
        incident("C-TR-HAND", "south", timedelta(days=5)),
    ]
    client = Client()
    for event in events:
        code, body, _ = client.request("POST", f"{stack.url('ingest')}/v1/events", event)
        assert code == 202, body

    def by_child() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {c: [] for c in CHILDREN}
        for record in read_all(kafka_bootstrap, stack.topics.outcomes):
            value = json.loads(record.value)
            assert record.key.decode() == value["data"]["obligation_id"]
            if value["data"]["rule"] == RULE:  # the referrals' decisions are not this report's
                found[value["data"]["subject_id"]].append(value)
        return found

    def complete() -> dict[str, list[dict[str, Any]]] | None:
        found = by_child()
        kinds = {c: sorted(r["data"]["outcome"] for r in found[c]) for c in CHILDREN}
        wanted = {
            "C-TR-ONTIME": ["met", "opened"],
            "C-TR-LATE": ["breached", "met", "opened"],
            "C-TR-OPEN": ["breached", "opened"],
            "C-TR-HAND": ["breached", "opened"],
        }
        return found if kinds == wanted else None

    found = wait_until(complete, timeout=60)
    assert found, by_child()
    hand = found["C-TR-HAND"][0]["data"]["obligation_id"]
    # The alert's id is the obligation's: close it by hand once notify has it.
    assert wait_until(
        lambda: client.request("GET", f"{stack.url('desk')}/v1/alerts/{hand}")[0] == 200
    )
    code, body, _ = client.request(
        "POST", f"{stack.url('desk')}/v1/alerts/{hand}/resolve", {"note": "moved away"}
    )
    assert code == 202, body
    return dict(found)


def test_outcomes_of_on_time_late_and_open_obligations(
    outcomes: dict[str, list[dict[str, Any]]],
) -> None:
    for records in outcomes.values():
        assert {r["data"]["rule"] for r in records} == {RULE}
        assert {r["type"] for r in records} == {"obligation.outcome"}
        assert len({r["data"]["obligation_id"] for r in records}) == 1
    [on_time] = [r["data"] for r in outcomes["C-TR-ONTIME"] if r["data"]["outcome"] == "met"]
    assert on_time["late_by_seconds"] == pytest.approx(-23 * 3600)
    [late] = [r["data"] for r in outcomes["C-TR-LATE"] if r["data"]["outcome"] == "met"]
    assert late["late_by_seconds"] == pytest.approx(29 * 86400)
    assert late["fulfilled_at"] is not None
    opened = [r["data"] for r in outcomes["C-TR-OPEN"] if r["data"]["outcome"] == "opened"]
    assert opened[0]["area"] == "north"
    assert opened[0]["due_at"] is not None


@pytest.fixture(scope="module")
def answered(stack: DevStack, outcomes: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The report once it counts all four cases, the closure by hand included."""

    def ready() -> dict[str, Any] | None:
        code, body, _ = report(stack.url("desk"))
        return body if code == 200 and stable(body) == EXPECTED else None

    body = wait_until(ready, timeout=60)
    assert body, stable(report(stack.url("desk"))[1])
    return dict(body)


def test_report_counts_the_cases(answered: dict[str, Any]) -> None:
    north, south = answered["rows"]
    assert north["on_time_percent"] == 33.3
    # 1 h early, 30 days, 2 days (still open) from the incident: one over 25 days
    assert north["sentence"] == "1 of 3 over 25 days"
    assert north["lateness_p90_seconds"] == pytest.approx(29 * 86400)
    assert south["closed_by_hand_by_reason"] == {"unspecified": 1}
    assert south["sentence"] == "0 of 0 over 25 days"
    assert answered["total"]["due"] == 4
    assert {m["month"] for m in answered["months"]} <= {
        (NOW - timedelta(days=d)).strftime("%Y-%m") for d in range(31)
    }


def test_report_as_csv_parses(stack: DevStack, answered: dict[str, Any]) -> None:
    code, body, headers = Client().request(
        "GET",
        f"{stack.url('desk')}/v1/reports/timeliness?from={PERIOD['from']}&to={PERIOD['to']}",
        headers={"Accept": "text/csv"},
    )
    assert code == 200
    assert headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    whole = [r for r in rows if "/" in r["period"]]
    assert [(r["area"], r["due"], r["sentence"]) for r in whole] == [
        ("north", "3", "1 of 3 over 25 days"),
        ("south", "1", "0 of 0 over 25 days"),
    ]
    assert sum(int(r["due"]) for r in rows if "/" not in r["period"]) == 4


def test_report_page_has_its_charts(stack: DevStack, answered: dict[str, Any]) -> None:
    code, body, headers = report(stack.url("desk"), format="html")
    assert code == 200
    assert headers["Content-Type"].startswith("text/html")
    assert body.count("<svg") >= 2
    assert "1 of 3 over 25 days" in body
    assert "C-TR-" not in body  # no subject ids anywhere in a report


def test_report_is_area_scoped_and_audited(
    stack: DevStack, answered: dict[str, Any], kafka_bootstrap: str
) -> None:
    url = stack.url("desk")
    code, body, _ = report(url, TOKENS.secret("duty-north"))
    assert code == 200
    assert [r["area"] for r in body["rows"]] == ["north"]
    assert report(url, TOKENS.secret("duty-north"), area="south")[0] == 403
    assert report(url, TOKENS.secret("sender"))[0] == 403
    assert report(url, "not-a-token")[0] == 401
    assert report(url, over="soon")[0] == 422
    assert report(url, **{"from": "2026-07-01", "to": "2026-01-01"})[0] == 422
    actions = [json.loads(r.value)["data"] for r in read_all(kafka_bootstrap, stack.audit_topic)]
    viewed = [a for a in actions if a["action"] == "report.viewed"]
    assert {a["actor"] for a in viewed} >= {"development", "duty-north"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["from", "to", "over", "rule", "area", "format"]),
        st.text(max_size=40) | st.sampled_from(["2026-01-01", "0001-01-01", "9999-12-31", "25d"]),
    )
)
def test_no_query_is_a_server_error(stack: DevStack, params: dict[str, str]) -> None:
    query = urllib.parse.urlencode(params)
    code, _, _ = Client().request("GET", f"{stack.url('desk')}/v1/reports/timeliness?{query}")
    assert code in {200, 403, 422}, params


def test_free_text_in_the_query_is_never_echoed(stack: DevStack) -> None:
    marker = "Jane Doe 2014-03-02"
    for name in ("from", "to", "over", "rule", "area", "format"):
        query = urllib.parse.urlencode({name: marker})
        code, body, _ = Client().request(
            "GET", f"{stack.url('desk')}/v1/reports/timeliness?{query}"
        )
        assert code == 422, (name, body)
        assert "Jane" not in json.dumps(body), name


def signed_in(stack: DevStack, token: str) -> httpx.Client:
    """A browser-like client signed in to the console with `token`."""
    client = loopback.Client(base_url=stack.url("desk"), follow_redirects=False, timeout=30)
    client.get("/console/sign-in")
    pre = client.cookies["safeguard_signin"]
    answer = client.post("/console/sign-in", data={"csrf": pre, "token": token})
    assert answer.status_code == 303, answer.text
    return client


def test_the_console_serves_the_report_to_signed_in_people(
    stack: DevStack, answered: dict[str, Any]
) -> None:
    path = f"/console/reports/timeliness?from={PERIOD['from']}&to={PERIOD['to']}"
    anonymous = loopback.get(f"{stack.url('desk')}{path}", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["Location"] == "/console/sign-in"

    browser = signed_in(stack, DEV_TOKEN)
    try:
        page = browser.get(path)
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert 'action="/console/reports/timeliness"' in page.text  # the period form
        assert "Sign out" in page.text  # inside the console's layout
        assert "1 of 3 over 25 days" in page.text
        assert "style=" not in page.text  # the CSP allows no inline styles
        sheet = browser.get("/console/reports/static/report.css")
        assert sheet.headers["Content-Type"].startswith("text/css")
        as_csv = browser.get(f"{path}&format=csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert {r["area"] for r in rows} == {"north", "south"}
    finally:
        browser.close()

    browser = signed_in(stack, TOKENS.secret("duty-north"))
    try:
        page = browser.get(path)
        assert page.status_code == 200
        assert ">south<" not in page.text
        assert browser.get(f"{path}&area=south").status_code == 403
        assert browser.get(f"{path}&over=soon").status_code == 422
    finally:
        browser.close()


def test_an_outcome_record_that_is_not_valid_is_dead_lettered(
    stack: DevStack, kafka_bootstrap: str
) -> None:
    produce(kafka_bootstrap, stack.topics.outcomes, [(b"al-broken", b"not json")])

    def dead() -> list[dict[str, Any]]:
        records = [json.loads(r.value) for r in read_all(kafka_bootstrap, stack.topics.deadletter)]
        return [r for r in records if r["topic"] == stack.topics.outcomes]

    [letter] = wait_until(dead, timeout=30)
    assert letter["reason"] == "invalid_json"
    assert letter["key"] == "al-broken"


def test_cli_prints_the_report(stack: DevStack, answered: dict[str, Any]) -> None:
    runner = CliRunner()
    base = ["report", "timeliness", "--from", PERIOD["from"], "--to", PERIOD["to"]]
    env = {"SAFEGUARD_TOKEN": DEV_TOKEN, "SAFEGUARD_URL": stack.url("desk")}

    as_json = runner.invoke(cli_app, [*base, "--output", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert stable(json.loads(as_json.stdout)) == EXPECTED

    table = runner.invoke(cli_app, [*base, "--rule", RULE, "--area", "north"], env=env)
    assert table.exit_code == 0, table.output
    assert "1 of 3 over 25 days" in table.stdout
    assert "33.3%" in table.stdout

    as_csv = runner.invoke(cli_app, [*base, "--output", "csv", "--over", "1d"], env=env)
    assert as_csv.exit_code == 0, as_csv.output
    first = next(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert (first["area"], first["sentence"]) == ("north", "2 of 3 over 1 day")

    refused = runner.invoke(cli_app, [*base, "--token", "not-a-token"], env=env)
    assert refused.exit_code == 1
    assert "401" in refused.output


def test_the_report_survives_a_restart_of_the_desk(
    stack: DevStack, answered: dict[str, Any]
) -> None:
    """The figures are rows in PostgreSQL, projected once: a restarted pod answers the same."""
    stack.stop_service("desk")
    stack.start_service("desk")
    stack.wait_ready("desk")
    again = wait_until(lambda: _stable_report(stack.url("desk")), timeout=60)
    assert again == stable(answered)


def test_a_second_desk_pod_gives_the_same_report(stack: DevStack, answered: dict[str, Any]) -> None:
    """Another desk pod on the same database answers the whole report, and both count a
    referral that arrives afterwards, whichever pod projected it."""
    one_pod = stable(answered)
    port = free_port()
    env = stack.environment(ServiceSpec("desk-2", "DESK_", port, "services.desk.main"))
    second = spawn([stack.python, "-m", "services.desk.main"], env=env, stdout=stack.output)
    try:
        urls = [stack.url("desk"), f"http://{stack.host}:{port}"]
        both = wait_until(lambda: all(_stable_report(u) == one_pod for u in urls), timeout=90)
        assert both, [_stable_report(u) for u in urls]
        client = Client()
        for n in range(6):
            child = f"C-TR-TWO-{n}"
            for event in (
                incident(child, "north", timedelta(hours=2)),
                referral(child, timedelta(0)),  # recorded in time: not a backdated one
            ):
                code, _, _ = client.request("POST", f"{stack.url('ingest')}/v1/events", event)
                assert code == 202
        later = [dict(one_pod[0], due=9, met_on_time=7), one_pod[1]]
        both = wait_until(lambda: all(_stable_report(u) == later for u in urls), timeout=60)
        assert both, [_stable_report(u) for u in urls]
    finally:
        stop(second)


def _stable_report(url: str) -> list[dict[str, Any]] | None:
    try:
        code, body, _ = report(url)
    except OSError:
        return None  # not listening yet
    return stable(body) if code == 200 else None
