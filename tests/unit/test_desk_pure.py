"""The desk's pure parts: settings, the OpenAPI document, query parsing, the pages' wording."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from multidict import MultiDict
from pydantic import ValidationError

from schemas.audit import AuditAction, AuditRecord
from schemas.views import ChildView
from services.desk import audit_search, present, reports
from services.desk.database import driver_url
from services.desk.errors import Conflict, InvalidQuery
from services.desk.migrate import SchemaState
from services.desk.openapi import COMMITTED, document, drifted, main
from services.desk.settings import DeskSettings
from tests.fixtures.views import T0, alert_view, child_view_record

NOW = datetime(2026, 2, 1, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


def test_settings_come_from_desk_variables_nested_with_double_underscores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESK_TOKENS_FILE", "config/dev-tokens.yaml")
    monkeypatch.setenv("DESK_DATABASE_URL", "postgresql://desk:s3cret@db/desk")
    monkeypatch.setenv("DESK_PROJECTOR__ENABLED", "false")
    monkeypatch.setenv("DESK_KAFKA__TOPICS__COMMANDS", "x.commands")
    settings = DeskSettings()
    assert settings.projector.enabled is False
    assert settings.kafka.topics.commands == "x.commands"
    assert settings.port == 8084
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("DESK_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="port"):
        DeskSettings()


def test_database_urls_get_the_psycopg_driver() -> None:
    assert driver_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    assert driver_url("postgres://h/d") == "postgresql+psycopg://h/d"
    with pytest.raises(ValueError, match="postgresql"):
        driver_url("sqlite:///desk.db")


def test_a_schema_state_says_which_revision_is_needed() -> None:
    assert SchemaState("0001", "0001", known=True).problem is None
    behind = SchemaState("0001", "0002", known=True)
    assert not behind.usable
    assert "needs revision 0002" in (behind.problem or "")
    assert "no schema" in (SchemaState(None, "0001", known=True).problem or "")
    assert SchemaState("0009", "0002", known=False).usable  # newer: a rollout in progress


def test_the_committed_openapi_matches_the_code(tmp_path: Path) -> None:
    assert not drifted(), "run `python -m services.desk.openapi` and commit openapi.json"
    path = tmp_path / "openapi.json"
    assert main(["--check", "--path", str(path)]) == 1
    assert main(["--path", str(path)]) == 0
    assert main(["--check", "--path", str(path)]) == 0
    assert json.loads(COMMITTED.read_text()) == document()
    ack = document()["paths"]["/v1/alerts/{alert_id}/ack"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "408", "409", "413", "422", "503"} == set(ack)


def q(**values: str) -> MultiDict[str]:
    return MultiDict(values)


def test_the_audit_search_takes_exactly_one_thing_and_a_period() -> None:
    search = audit_search.parse(q(child_id="C-1", **{"from": "2026-01-01"}), NOW)
    assert (search.kind, search.value) == ("child_id", "C-1")
    assert search.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert search.end == NOW + timedelta(seconds=1)
    assert audit_search.audited_as(search) == {
        "child_id": "C-1",
        "alert_id": None,
        "searched_principal": None,
    }
    report = audit_search.parse(q(report="timeliness"), NOW)
    assert report.value is None
    assert report.start == NOW + timedelta(seconds=1) - timedelta(days=30)
    for bad in (
        q(),
        q(child_id="C-1", alert_id="al-1"),
        q(child_id="Jane Doe"),
        q(principal="a b"),
        q(report="other"),
        q(child_id="C-1", limit="0"),
        q(child_id="C-1", cursor="x"),
        q(child_id="C-1", **{"from": "2026-02-02", "to": "2026-02-01"}),
        q(child_id="C-1", **{"from": "yesterday"}),
    ):
        with pytest.raises(InvalidQuery) as refused:
            audit_search.parse(bad, NOW)
        assert "Jane" not in refused.value.message


def test_an_audit_search_record_names_at_most_one_thing() -> None:
    AuditRecord(action=AuditAction.AUDIT_SEARCHED, actor="dpo", at=NOW, principal="duty")
    AuditRecord(action=AuditAction.AUDIT_SEARCHED, actor="dpo", at=NOW)
    with pytest.raises(ValidationError):
        AuditRecord(
            action=AuditAction.AUDIT_SEARCHED, actor="dpo", at=NOW, child_id="C", alert_id="a"
        )
    with pytest.raises(ValidationError):
        AuditRecord(
            action=AuditAction.CHILD_VIEWED, actor="dpo", at=NOW, child_id="C", principal="x"
        )


def test_report_queries_are_parsed_as_notify_parsed_them() -> None:
    query = reports.parse_query(
        q(**{"from": "2026-01-01", "to": "2026-03-01T00:00:00+01:00"}, over="36h"), NOW
    )
    assert query.end == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert query.over == timedelta(hours=36)
    default = reports.parse_query(q(), NOW)
    assert (default.start, default.end) == (
        datetime(2025, 8, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    for bad in (
        {"over": "soon"},
        {"over": "0s"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"rule": "a b"},
        {"to": "9999-12-31T23:59:59+00:00", "over": "99999999999d"},
    ):
        with pytest.raises(InvalidQuery):
            reports.parse_query(q(**bad), NOW)
    assert reports.representation(None, "text/csv") == "csv"
    assert reports.representation("html", "text/csv") == "html"
    with pytest.raises(InvalidQuery):
        reports.representation("pdf", None)


def test_a_refusal_carries_what_the_answer_needs() -> None:
    conflict = Conflict("the alert is resolved", current="resolved")
    assert conflict.body() == {
        "error": "conflict",
        "message": "the alert is resolved",
        "current": "resolved",
    }
    assert conflict.status == 409


def test_the_alert_page_says_how_it_ended_and_the_ladder_who_was_told() -> None:
    view = alert_view(
        "al-1", status="resolved", closed=(T0 + timedelta(hours=2), "duplicate"), level=1
    )
    ended = present.outcome(view, LONDON)
    assert ended.fulfilled is None
    assert ended.closed == "a duplicate of another alert"
    assert ended.closed_by == "By duty, Mon 2 Nov 2026 12:00 GMT."
    ladder = present.ladder(view, LONDON)
    assert [(r.level, r.state) for r in ladder] == [(1, "reached"), (2, "not needed (resolved)")]
    assert ladder[1].due is not None
    assert (ladder[1].due.local, ladder[1].due.iso) == (
        "Mon 2 Nov 2026 11:00 GMT",
        "2026-11-02T11:00:00Z",
    )
    assert present.status_label(alert_view("al-2", reopened_at=T0)) == "re-opened"
    assert present.span(timedelta(days=2, hours=3)) == "2 d 3 h"
    met = alert_view("al-3", status="resolved", fulfilled_at=T0 + timedelta(hours=3))
    assert present.outcome(met, LONDON).fulfilled == (
        "Fulfilled Mon 2 Nov 2026 13:00 GMT (4 h late), by event ref-al-3."
    )


def test_the_chronology_merges_events_obligations_and_breaches_newest_first() -> None:
    child = ChildView.model_validate(
        json.loads(child_view_record("C-1", events=[("child.missing", T0 - timedelta(days=1))])[1])[
            "data"
        ]
    )
    closed = alert_view("al-1", status="resolved", closed=(T0 + timedelta(hours=1), None))
    items = present.chronology(child, [closed])
    assert [i["kind"] for i in items] == ["Due", "Closed", "Breach", "Event"]
    assert items[1]["what"] == (
        "social-care-referral: closed by hand by duty, not a fulfilment: no reason was given"
    )
    assert items[2]["alert_id"] == "al-1"
    assert present.chronology(None, []) == []


def test_the_dev_stack_adds_desk_pods_on_one_database(tmp_path: Path) -> None:
    from devtools.stack import DevStack, StackStartError  # noqa: PLC0415

    stack = DevStack(
        bootstrap="127.0.0.1:9092",
        data_dir=tmp_path,
        webhook_url="http://127.0.0.1:1/hook",
        topic_prefix="t.",
        app_suffix="-x",
        desk_ports=[18084, 18085],
        database_url="postgresql://postgres@127.0.0.1:5433/safeguard",
    )
    desks = [s for s in stack.specs if s.prefix == "DESK_"]
    assert [(s.name, s.port, s.entry) for s in desks] == [
        ("desk", 18084, "services.desk.main"),
        ("desk-2", 18085, "services.desk.main"),
    ]
    env = stack.environment(desks[1])
    assert env["DESK_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5433/safeguard"
    assert env["DESK_PROJECTOR__GROUP_ID"] == "safeguard-desk-x"
    assert env["DESK_KAFKA__TOPICS__ALERT_VIEWS"] == "t.safeguarding.alert-views.v1"
    assert env["DESK_PORT"] == "18085"
    assert env["DESK_POLICY_FILE"] == str(stack.policy_file)
    assert not any(k.startswith("DESK_STREAM") for k in env)
    # Notify's links open the desk's console when there is one.
    notify = next(s for s in stack.specs if s.name == "notify")
    assert stack.environment(notify)["NOTIFY_PUBLIC_URL"] == "http://127.0.0.1:18084"
    with pytest.raises(StackStartError, match="database_url"):
        DevStack(bootstrap="b", data_dir=tmp_path, webhook_url="w", desk_ports=[1]).environment(
            desks[0]
        )
