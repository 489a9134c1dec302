"""Two of each, as production runs them: two notify workers and two desk pods,
with ingest and risk, every one a real process on the real broker (Tansu) and a real
PostgreSQL, the scenarios of tests/scenarios replayed through ingest's HTTP API.

Every desk pod lists exactly the alerts risk published on the alerts topic, and its
console's queue counts the unresolved ones. With PostgreSQL stopped for half a minute
during a replay, alerting goes on without it: every webhook is delivered, each once,
while the desk answers a clear 503; once PostgreSQL is back, every pod is complete.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.broker import free_port
from devtools.postgres import DevPostgres
from devtools.stack import DevStack, ServiceSpec, desk_name
from services.common.processes import spawn
from services.desk import migrate
from tests.e2e.test_desk_pods import sign_in
from tests.e2e.test_scenarios import alert_states, observed, offset, scenario_files, subjects_of
from tests.fixtures import loopback
from tests.fixtures.stack import Client, StackFactory, wait_until
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e

# The requirement itself: long enough for every stream service to have published,
# notified and moved on while the database is away.
OUTAGE_SECONDS = 30
QUEUE_TOTAL = re.compile(r'class="count total"><span class="n">(\d+)</span>')
# The console's queue holds these (resolved alerts are in the handover).
QUEUE_STATUSES = {"open", "acknowledged"}
SECOND_NOTIFY = "notify-2"
# Production holds level 1 for the policy's 30 s to group the alerts one event raises;
# a shorter hold keeps grouping (a leader's message listing siblings, perhaps on the
# other worker, which then send nothing) without spending the outage waiting.
GROUP_WINDOW_SECONDS = 5.0


@dataclass
class TwoOfEach:
    """The running system and the PostgreSQL its desk pods share (ours to stop)."""

    stack: DevStack
    postgres: DevPostgres
    second_notify_url: str

    @property
    def desks(self) -> list[str]:
        return [self.stack.url(desk_name(n)) for n in range(len(self.stack.desk_ports))]

    @property
    def notify_workers(self) -> list[str]:
        return [self.stack.url("notify"), self.second_notify_url]


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevPostgres]:
    """A server of this module's own: the outage test stops it, which the session's
    server (shared with other modules, or an external one) must never be."""
    server = DevPostgres(tmp_path_factory.mktemp("pg") / "pg", remove_on_stop=True).start()
    yield server
    server.close()


def answers_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def start_second_notify(stack: DevStack) -> str:
    """Start another notify worker in the first one's group; return its base URL."""
    spec = ServiceSpec("notify", "NOTIFY_", free_port())
    env = stack.environment(spec)
    # Its own data directory, as on another machine: the workers share only the broker.
    data_dir = stack.data_dir / SECOND_NOTIFY
    data_dir.mkdir(parents=True, exist_ok=True)
    env["NOTIFY_STREAM__DATA_DIR"] = str(data_dir)
    # In `processes`, DevStack.stop() stops it with the rest.
    stack.processes[SECOND_NOTIFY] = spawn(
        [stack.python, "-m", spec.entry], env=env, stdout=stack.output
    )
    return f"http://{stack.host}:{spec.port}"


@pytest.fixture(scope="module")
def system(own_postgres: DevPostgres, stack_factory: StackFactory) -> TwoOfEach:
    # own_postgres first: fixtures are torn down in reverse, so the services stop before
    # their database does.
    database_url = own_postgres.create_database("desk")
    migrate.upgrade(database_url)
    stack = stack_factory(
        desks=2,
        start=False,
        database_url=database_url,
        group_window_seconds=GROUP_WINDOW_SECONDS,
    )
    try:
        # All at once, so the two notify workers join their group together and no
        # rebalance happens once alerts flow.
        for spec in stack.specs:
            stack.start_service(spec.name)
        second = start_second_notify(stack)
        for spec in stack.specs:
            stack.wait_ready(spec.name)
        process = stack.processes[SECOND_NOTIFY]
        assert wait_until(
            lambda: process.poll() is not None or answers_ready(second), timeout=90
        ), "the second notify worker was not ready"
        assert process.poll() is None, f"the second notify worker exited: {process.returncode}"
    except Exception:
        assert stack.output is not None
        stack.output.flush()
        print(Path(stack.output.name).read_text()[-20000:])  # noqa: T201 - shown only on failure
        raise
    return TwoOfEach(stack, own_postgres, second)


def renamed(value: Any, tag: str) -> Any:
    """Tag every identifier in an event (its own id and each reference) consistently, so
    a second replay is about new subjects: risk and ingest would drop repeated ids."""
    if isinstance(value, dict):
        return {
            key: (
                f"{item}-{tag}"
                if isinstance(item, str) and (key == "id" or key.endswith("_id"))
                else [f"{i}-{tag}" for i in item]
                if key.endswith("_ids")
                else renamed(item, tag)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [renamed(item, tag) for item in value]
    return value


@dataclass
class Replay:
    subjects: set[str]
    expected: Counter[tuple[str, str, str]]


def replay(stack: DevStack, tag: str | None = None) -> Replay:
    """POST every scenario's events to ingest, as test_scenarios does, ids tagged if asked."""
    client = Client()
    done = Replay(set(), Counter())
    for path in scenario_files():
        scenario = json.loads(path.read_text())
        start = datetime.now(UTC)
        for step in scenario["events"]:
            source = step["event"] if tag is None else renamed(step["event"], tag)
            event = {"specversion": "1.0", "datacontenttype": "application/json", **source}
            event["time"] = (start + offset(step["at"])).strftime("%Y-%m-%dT%H:%M:%SZ")
            done.subjects |= subjects_of(event)
            code, body, _ = client.request("POST", f"{stack.url('ingest')}/v1/events", event)
            assert code == 202, (path.stem, step, body)
        done.expected.update(
            (e["rule"], e["subject"] if tag is None else f"{e['subject']}-{tag}", e["state"])
            for e in scenario["expect"]
        )
    return done


def wait_for_expected(stack: DevStack, done: Replay, *, timeout: float) -> None:
    """Wait until risk has published every alert the scenarios expect (a lower bound:
    the complete set is whatever the topic holds, risk-level alerts included)."""

    def missing() -> Counter[tuple[str, str, str]]:
        return done.expected - observed(stack, done.subjects)

    assert wait_until(lambda: not missing(), timeout=timeout), f"never published: {missing()}"


@dataclass(frozen=True)
class Snapshot:
    """Alert ids, and those still in the queue (not resolved)."""

    alerts: frozenset[str]
    unresolved: frozenset[str]


def published(stack: DevStack) -> Snapshot:
    states = alert_states(stack)
    return Snapshot(frozenset(states), frozenset(a for a, s in states.items() if not s["resolved"]))


def listing(url: str) -> dict[str, dict[str, Any]] | None:
    """The pod's `GET /v1/alerts?limit=500` by alert id; None unless it answers 200."""
    try:
        code, body, _ = Client().request("GET", f"{url}/v1/alerts?limit=500")
    except OSError:
        return None
    if code != 200:
        return None
    # One page must hold everything, or "the same set" would compare first pages only.
    assert body["next_cursor"] is None, "more alerts than one page: raise the limit"
    return {a["alert_id"]: a for a in body["alerts"]}


def listed(url: str) -> Snapshot | None:
    alerts = listing(url)
    if alerts is None:
        return None
    return Snapshot(
        frozenset(alerts), frozenset(a for a, v in alerts.items() if v["status"] in QUEUE_STATUSES)
    )


def gaps(system: TwoOfEach) -> dict[str, str]:
    """What each pod lists differently from the topic (empty when every pod agrees)."""
    truth = published(system.stack)
    found: dict[str, str] = {}
    for url in system.desks:
        seen = listed(url)
        if seen is None:
            found[url] = "no 200 answer"
        elif seen != truth:
            found[url] = (
                f"missing {sorted(truth.alerts - seen.alerts)}, extra "
                f"{sorted(seen.alerts - truth.alerts)}, queue differs on "
                f"{sorted(truth.unresolved ^ seen.unresolved)}"
            )
    return found


def same_detail(system: TwoOfEach, alert_id: str) -> dict[str, Any] | None:
    """The alert's `GET /v1/alerts/{id}`, when every pod answers it 200 and the same."""
    answers = [Client().request("GET", f"{url}/v1/alerts/{alert_id}") for url in system.desks]
    bodies = [body for code, body, _ in answers if code == 200]
    if len(bodies) != len(answers) or any(b != bodies[0] for b in bodies):
        return None
    detail: dict[str, Any] = bodies[0]
    return detail


def assert_every_pod_complete(system: TwoOfEach, *, timeout: float) -> Snapshot:
    """Every pod lists the topic's alerts, with the same ones unresolved; its console
    counts those; and each pod shows a critical alert the same way."""
    assert wait_until(lambda: not gaps(system), timeout=timeout), gaps(system)
    truth = published(system.stack)
    assert truth.unresolved, "nothing in the queue: the console's count would prove nothing"
    for url in system.desks:
        browser = sign_in(url)
        try:
            queue = browser.get("/console/queue")
        finally:
            browser.close()
        assert queue.status_code == 200, queue.text[-2000:]
        total = QUEUE_TOTAL.search(queue.text)
        assert total is not None, queue.text[-2000:]
        assert int(total.group(1)) == len(truth.unresolved), url
    states = alert_states(system.stack)
    critical = sorted(
        a for a, s in states.items() if s["raised"] and s["raised"]["severity"] == "critical"
    )
    assert critical, "the scenarios raise critical alerts (a child held overnight)"
    # Both pods read one row; a delivery outcome may add a revision between two reads.
    details = wait_until(lambda: same_detail(system, critical[0]), timeout=timeout)
    assert details, [Client().request("GET", f"{u}/v1/alerts/{critical[0]}") for u in system.desks]
    assert details["alert"]["alert_id"] == critical[0]
    assert details["alert"]["severity"] == "critical"
    assert (details["status"] == "resolved") == states[critical[0]]["resolved"], details
    return truth


def test_every_desk_pod_lists_every_alert_risk_published(system: TwoOfEach) -> None:
    done = replay(system.stack)
    wait_for_expected(system.stack, done, timeout=60)
    assert_every_pod_complete(system, timeout=60)


def webhooks(webhook: WebhookReceiver) -> Counter[tuple[str, str, int, int]]:
    """Deliveries per (alert, purpose, level, round): one grouped message counts for each
    alert it lists, so an alert told both in a group and on its own counts twice."""
    counted: Counter[tuple[str, str, int, int]] = Counter()
    for body in list(webhook.received):
        told = {body["alert"]["alert_id"], *(m["alert_id"] for m in body.get("alerts", []))}
        for alert_id in told:
            counted[(alert_id, body["purpose"], body["level"], body["round"])] += 1
    return counted


def untold(system: TwoOfEach, webhook: WebhookReceiver) -> set[str]:
    """Alerts on the topic that no webhook has told the duty desk about."""
    told = {alert_id for alert_id, *_ in webhooks(webhook)}
    return set(published(system.stack).alerts) - told


def webhook_requests(url: str) -> int:
    """How many webhook requests this notify worker made (every attempt, retries too)."""
    text = loopback.get(f"{url}/metrics", timeout=10).text
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "safeguard_notify_notification_requests_total"
        and sample.labels.get("channel") == "webhook"
    )


def assert_database_unavailable(url: str) -> None:
    code, body, headers = Client().request("GET", f"{url}/v1/alerts?limit=500")
    assert code == 503, (url, body)
    assert body["error"] == "database_unavailable", body
    retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after", "")
    assert retry_after.isdigit(), headers
    assert int(retry_after) > 0


def test_alerting_goes_on_without_postgresql_and_every_pod_catches_up(
    system: TwoOfEach, webhook: WebhookReceiver
) -> None:
    before = set(published(system.stack).alerts)
    system.postgres.stop()
    stopped = time.monotonic()
    try:
        done = replay(system.stack, tag="pgdown")
        checks = 0
        told_while_down = False
        while time.monotonic() < stopped + OUTAGE_SECONDS:
            for url in system.desks:
                assert_database_unavailable(url)
            checks += 1
            if not told_while_down:
                new = set(published(system.stack).alerts) - before
                told_while_down = (
                    not (done.expected - observed(system.stack, done.subjects))
                    and bool(new)
                    and not untold(system, webhook)
                )
            time.sleep(1)
        assert checks >= 3, "too few checks of the desk during the outage"
        assert told_while_down, (
            f"alerting waited for the database: untold {sorted(untold(system, webhook))}; "
            f"not yet published {done.expected - observed(system.stack, done.subjects)}"
        )
    finally:
        system.postgres.start()

    truth = assert_every_pod_complete(system, timeout=90)
    assert truth.alerts > before, "the replay during the outage raised no new alert"
    # Nothing told twice (a retry, a rebalance, a worker each), nothing left untold.
    twice = {key: n for key, n in webhooks(webhook).items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    ids = Counter(body["notification_id"] for body in list(webhook.received))
    assert [i for i, n in ids.items() if n > 1] == []
    assert not untold(system, webhook)
    # Both workers did their share, and neither sent anything the receiver did not count.
    requests = [webhook_requests(url) for url in system.notify_workers]
    assert all(requests), f"a notify worker delivered nothing: {requests}"
    assert sum(requests) == len(webhook.received), (requests, len(webhook.received))
    assert all(webhook.verified), "a delivery was not signed with the duty desk's secret"
