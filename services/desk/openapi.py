"""The OpenAPI 3.1 description of the desk's API, generated from its models.

    python -m services.desk.openapi            # (re)write services/desk/openapi.json
    python -m services.desk.openapi --check    # exit 1 if the committed file drifted

The desk serves the generated document at `/openapi.json`; the committed file is what
other teams read, so a test fails when the two differ, and another when a route of the
app is missing from it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter

from schemas.views import AlertView, NextStep
from services.common import openapi_file
from services.desk.actions import Accepted, ActionRequest

COMMITTED = Path(__file__).parent / "openapi.json"
JSON = "application/json"
_REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every refusal: a code, a message, and what was wrong where."""

    error: str
    message: str
    errors: list[dict[str, str]] | None = None
    current: str | None = Field(default=None, description="409: the alert's status now")


class AlertSummary(BaseModel):
    """An alert's line in the list."""

    alert_id: str
    rule: str
    severity: str
    status: str
    level: int
    raised_at: str
    due_at: str | None
    summary: str
    subject_kind: str
    subject_id: str
    area: str | None
    next_step: NextStep | None = Field(
        description="what the ladder does next if nobody acts, and whom it reaches (UTC)"
    )


class AlertList(BaseModel):
    """A page of alerts (newest raise first, or by urgency); `complete` is always true."""

    alerts: list[AlertSummary]
    next_cursor: str | None
    complete: bool
    as_of: str = Field(description="the desk's time of the answer (UTC): countdowns count from it")


class ChronologyItem(BaseModel):
    """One line of a child's chronology."""

    at: str
    iso: str
    kind: str
    what: str
    alert_id: str


class Chronology(BaseModel):
    """A child's view merged with the alerts about the child."""

    child_id: str
    as_of: str | None
    level: str | None
    score: int | None
    factors: list[dict[str, Any]]
    obligations: list[dict[str, Any]]
    open_obligations: list[dict[str, Any]]
    recent_events: list[dict[str, Any]]
    refused_fulfilments: list[dict[str, Any]]
    alerts: list[AlertSummary]
    others_hold_more: bool = Field(
        description="other areas hold parts of this child's chronology, not shown to the "
        "caller (nor the score that rests on them)"
    )
    chronology: list[ChronologyItem]


class AuditEntry(BaseModel):
    """One audit record as the search shows it."""

    at: str
    actor: str
    action: str
    service: str
    child_id: str | None
    alert_id: str | None
    event: dict[str, str] | None
    principal: str | None
    record_id: str


class AuditPage(BaseModel):
    """A page of audit records, newest first."""

    query: dict[str, str]
    records: list[AuditEntry]
    next_cursor: str | None


class Status(BaseModel):
    """A probe's answer."""

    status: str
    reason: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    projector: str | None = None


def _schema(target: Any, components: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    schema = TypeAdapter(target).json_schema(ref_template=_REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(description: str, model: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(model)}}}


_RETRY = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_REFUSALS = {
    "401": {**_json("no token, or one nobody configured", "ErrorBody")},
    "403": _json(
        "the token lacks the role (or a report was asked for an area not the token's); a "
        "thing outside the token's areas is a 404, as an unknown one",
        "ErrorBody",
    ),
    "408": _json("the request's body did not arrive in time", "ErrorBody"),
    "503": {
        **_json("the database or the broker (the audit record) did not answer", "ErrorBody"),
        "headers": _RETRY,
    },
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _get(
    operation: str, summary: str, ok: dict[str, Any], params: list[dict[str, Any]], **extra: object
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": params,
            "responses": {"200": ok, **_REFUSALS, **extra},
        }
    }


def _action(operation: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [_path("alert_id")],
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": _ref("ActionRequest")}},
            },
            "responses": {
                "202": _json("the command is on the broker; notify applies it", "Accepted"),
                "400": _json("the body is not JSON", "ErrorBody"),
                "404": _json("no such alert, or one outside the token's areas", "ErrorBody"),
                "409": _json("the alert's status does not allow it (`current`)", "ErrorBody"),
                "413": _json("the body is over 16 KiB", "ErrorBody"),
                "422": _json("the body is not valid", "ErrorBody"),
                **_REFUSALS,
            },
        }
    }


def _probe(operation: str, summary: str, ready: bool) -> dict[str, Any]:  # noqa: FBT001
    responses: dict[str, Any] = {"200": _json("ok", "Status")}
    if ready:
        responses["503"] = {
            **_json("the database does not answer, or its schema is old", "Status"),
            "headers": _RETRY,
        }
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


_INVALID = {"422": _json("a filter, limit, cursor or parameter is not valid", "ErrorBody")}
_PERIOD = [
    _query("from", "a date (2026-01-01, midnight UTC) or an RFC 3339 time"),
    _query("to", "the end of the period (not included), the same forms"),
]


def document() -> dict[str, Any]:
    """Return the OpenAPI document as a JSON-compatible dict."""
    components: dict[str, Any] = {}
    for model in (ErrorBody, AlertList, ActionRequest, Accepted, Chronology, AuditPage, Status):
        components[model.__name__] = _schema(model, components)
    components["AlertView"] = _schema(AlertView, components)
    components["Report"] = {
        "type": "object",
        "description": "the timeliness report's figures (docs/contract.md section 6)",
    }
    components["PackFigures"] = {
        "type": "object",
        "description": "the assurance pack's figures, canonical JSON whose SHA-256 the "
        "document prints (docs/contract.md section 6)",
    }
    alert_filters = [
        _query(
            "order",
            "raised (newest raise first, the default) or urgency (the work queue's order: "
            "open and acknowledged alerts, most severe, then most urgent)",
        ),
        _query("status", "open, acknowledged or resolved (not resolved with order=urgency)"),
        _query("subject_kind", "child, offender or enquiry"),
        _query("subject_id", "the alerts about this subject (a child: audited as child.viewed)"),
        _query("trigger_id", "the alerts one event raised (its CloudEvents id): an incident"),
        _query("rule", "a rule id"),
        _query("severity", "medium, high or critical"),
        _query("area", "an area code"),
        _query("limit", "1 to 500 (100)", {"type": "integer", "minimum": 1, "maximum": 500}),
        _query("cursor", "the previous page's next_cursor"),
    ]
    report_params = [
        *_PERIOD,
        _query("rule", "a rule id"),
        _query("area", "an area code"),
        _query("over", "the sentence's threshold, a duration (25d)"),
        _query("format", "json, csv or html (wins over Accept)"),
    ]
    audit_params = [
        _query("child_id", "who read or acted on this child (and the alerts about it)"),
        _query("alert_id", "who read or acted on this alert"),
        _query("principal", "everything this token name did"),
        _query("report", "timeliness: who viewed the report"),
        *_PERIOD,
        _query("limit", "1 to 1000 (200)", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _query("cursor", "the previous page's next_cursor"),
        _query("format", "json or csv"),
    ]
    pack_params = [
        _query("period", "a month (2026-07) or a quarter (2026-Q3); required"),
        _query("area", "an area code (default: the token's one area, or the partnership)"),
        _query("as_of", "the figures as of this RFC 3339 time (default: now, to the minute)"),
        _query("format", "json (the figures), html or pdf"),
    ]
    text = {"text/csv": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safeguard desk",
            "version": "1",
            "description": (
                "What people read, from the desk's PostgreSQL projection, complete from any "
                "pod; acknowledging and resolving are published as commands for notify "
                "(docs/contract.md section 6). Every read and act is audited before it is "
                "served."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8084"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(components.items())),
        },
        "paths": {
            "/v1/alerts": _get(
                "listAlerts",
                "Alerts, newest raise first or in urgency order",
                _json("a page", "AlertList"),
                alert_filters,
                **_INVALID,
            ),
            "/v1/alerts/{alert_id}": _get(
                "getAlert",
                "One alert's view",
                _json("the alert", "AlertView"),
                [_path("alert_id")],
                **{"404": _json("no such alert, or one outside the token's areas", "ErrorBody")},
            ),
            "/v1/alerts/{alert_id}/ack": _action("acknowledgeAlert", "Acknowledge an open alert"),
            "/v1/alerts/{alert_id}/resolve": _action("resolveAlert", "Resolve an alert by hand"),
            "/v1/children/{child_id}": _get(
                "getChild",
                "A child's chronology",
                _json("the chronology", "Chronology"),
                [_path("child_id")],
                **{
                    "404": _json(
                        "nothing is known about this child in the token's areas", "ErrorBody"
                    )
                },
            ),
            "/v1/reports/timeliness": _get(
                "timelinessReport",
                "The timeliness report (JSON, CSV or HTML)",
                {
                    "description": "the report",
                    "content": {
                        JSON: {"schema": _ref("Report")},
                        **text,
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                report_params,
                **_INVALID,
            ),
            "/v1/reports/pack": _get(
                "assurancePack",
                "The assurance pack (roles lead and audit): figures, HTML or PDF",
                {
                    "description": "the pack; X-Safeguard-Figures-SHA256 is its figures' hash",
                    "content": {
                        JSON: {"schema": _ref("PackFigures")},
                        "text/html": {"schema": {"type": "string"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                pack_params,
                **_INVALID,
            ),
            "/v1/audit": _get(
                "searchAudit",
                "Search the audit trail (role audit)",
                {
                    "description": "a page of records",
                    "content": {JSON: {"schema": _ref("AuditPage")}, **text},
                },
                audit_params,
                **_INVALID,
            ),
            "/healthz": _probe("healthz", "liveness: the process answers", ready=False),
            "/readyz": _probe(
                "readyz", "readiness: the database answers at this code's schema", ready=True
            ),
            **openapi_file.metrics_and_document_paths(),
        },
    }


_DOCUMENT: dict[str, Any] | None = None


async def page(_request: web.Request) -> web.Response:
    """`GET /openapi.json`."""
    global _DOCUMENT  # noqa: PLW0603 - built once, on first use
    if _DOCUMENT is None:
        _DOCUMENT = document()
    return web.json_response(_DOCUMENT)


def render() -> str:
    """Return the document as the committed file's text."""
    return openapi_file.render(document)


def drifted(path: Path = COMMITTED) -> bool:
    """Tell whether the committed file differs from the generated document."""
    return openapi_file.drifted(document, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return openapi_file.main(
        argv, module="services.desk.openapi", document=document, committed=COMMITTED
    )


if __name__ == "__main__":
    sys.exit(main())
