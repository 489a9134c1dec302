"""The event contract: what parses, what is rejected and how the errors read."""

import contextlib
import copy
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    ENVELOPE_TYPES,
    EVENT_TYPES,
    AlertRaised,
    AlertRaisedEvent,
    AlertResolved,
    AlertResolvedEvent,
    DeadLetter,
    DeadLetterReason,
    Envelope,
    EventRef,
    EventType,
    FieldError,
    InvalidEvent,
    KeyEncoding,
    MalformedJSON,
    Severity,
    SubjectKind,
    alert_raised_event,
    alert_resolved_event,
    deterministic_alert_id,
    format_validation_error,
    parse_alert,
    parse_event,
    parse_event_json,
)

NOW = datetime(2026, 11, 20, 21, 14, tzinfo=UTC)
KEY = b"test alert-id secret"
DELETE = object()

VALID_DATA: dict[str, dict[str, Any]] = {
    "incident.reported": {
        "incident_id": "INC-77",
        "category": "domestic_abuse",
        "dash_risk": "high",
        "area": "north",
        "children": [
            {"child_id": "C-2001", "present": True, "age": 8},
            {"child_id": "C-2002", "present": False},
        ],
    },
    "child.welfare_checked": {"incident_id": "INC-77", "child_id": "C-2001", "outcome": "safe"},
    "referral.shared": {
        "referral_id": "R-1",
        "child_id": "C-2001",
        "agency": "childrens_social_care",
        "incident_id": "INC-77",
        "contents": ["incident_details", "risk_assessment"],
    },
    "child.missing": {"episode_id": "EP-1", "child_id": "C-3001", "risk_grade": "high"},
    "child.found": {"episode_id": "EP-1", "child_id": "C-3001"},
    "return_interview.completed": {"episode_id": "EP-1", "child_id": "C-3001"},
    "exploitation.concern_raised": {
        "concern_id": "CON-1",
        "child_id": "C-5001",
        "kind": "criminal",
        "level": "high",
        "age": 12,
    },
    "safeguarding.action_taken": {
        "action_id": "A-1",
        "child_id": "C-5001",
        "action": "strategy_discussion",
        "concern_id": "CON-1",
    },
    "offender.registered": {"offender_id": "O-1", "risk_level": "very_high", "area": "south"},
    "offender.visited": {"offender_id": "O-1", "visit": "initial"},
    "offender.risk_assessed": {"offender_id": "O-1", "risk_level": "medium"},
    "offender.manager_assigned": {"offender_id": "O-1", "manager_id": "OM-7"},
    "forensic.examination_requested": {
        "enquiry_id": "ENQ-1",
        "child_ids": ["C-6001", "C-6002"],
        "contact_restricted": True,
    },
    "forensic.examination_completed": {"enquiry_id": "ENQ-1"},
    "custody.child_detained": {
        "custody_id": "CU-1",
        "child_id": "C-4001",
        "age": 15,
        "charged": True,
    },
    "custody.child_released": {
        "custody_id": "CU-1",
        "child_id": "C-4001",
        "destination": "local_authority_accommodation",
    },
    "referral.supplemented": {
        "referral_id": "R-1",
        "child_id": "C-2001",
        "contents": ["risk_assessment", "voice_of_child"],
    },
    "referral.decided": {
        "referral_id": "R-1",
        "child_id": "C-2001",
        "decision": "section_47_enquiry",
    },
    "child.missing_regraded": {"episode_id": "EP-1", "child_id": "C-3001", "risk_grade": "high"},
    "return_interview.shared": {"episode_id": "EP-1", "child_id": "C-3001"},
    "custody.accommodation_requested": {"custody_id": "CU-1", "child_id": "C-4001"},
    "custody.accommodation_refused": {
        "custody_id": "CU-1",
        "child_id": "C-4001",
        "reason": "no_placement_available",
    },
}
# Every event concerns an area (required): who may see it, where it is routed.
for _data in VALID_DATA.values():
    _data.setdefault("area", "north")


def event(event_type: str = "incident.reported", **attrs: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ev-{event_type}",
        "source": "urn:safeguard:source:control-room",
        "type": event_type,
        "time": "2026-11-20T21:00:00Z",
        "datacontenttype": "application/json",
        "data": copy.deepcopy(VALID_DATA[event_type]),
        **attrs,
    }


def parse_dict(raw: dict[str, Any], now: datetime | None = NOW) -> object:
    return parse_event(raw, now=now)


def parse_text(raw: dict[str, Any], now: datetime | None = NOW) -> object:
    return parse_event_json(json.dumps(raw).encode(), now=now)


PARSERS = [pytest.param(parse_dict, id="dict"), pytest.param(parse_text, id="json")]


def errors_of(parse: Callable[..., object], raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEvent) as caught:
        parse(raw)
    return [(error.loc, error.msg) for error in caught.value.errors]


def test_examples_cover_every_event_type() -> None:
    assert set(VALID_DATA) == set(EventType) == set(EVENT_TYPES) == set(ENVELOPE_TYPES)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("event_type", list(EventType))
def test_valid_event_parses_to_its_typed_envelope(
    parse: Callable[..., Any],
    event_type: EventType,
) -> None:
    parsed = parse(event(event_type))
    envelope_class, data_class = type(parsed), type(parsed.data)
    assert envelope_class is ENVELOPE_TYPES[event_type]
    assert data_class is EVENT_TYPES[event_type]
    assert parsed.type == event_type
    assert parse_event_json(parsed.to_json(), now=NOW) == parsed


def with_change(raw: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    target: Any = raw
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


INVALID = [
    # (event type, path to change, new value or DELETE, expected loc, message fragment)
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "chlid_id"),
        "C-1",
        "data.children[0].<unknown field #1>",
        "unknown field",
        id="typo-in-data",
    ),
    pytest.param(
        "child.found",
        ("data", "note"),
        "x",
        "data.<unknown field #1>",
        "unknown field",
        id="extra-data",
    ),
    pytest.param(
        "child.found",
        ("traceparent",),
        "x",
        "<unknown field #1>",
        "unknown field",
        id="extra-attr",
    ),
    pytest.param(
        "child.found", ("data", "child_id"), "C 1", "data.child_id", "pattern", id="id-space"
    ),
    pytest.param(
        "child.found", ("data", "child_id"), "C-1\n", "data.child_id", "pattern", id="id-newline"
    ),
    pytest.param(
        "child.found", ("data", "child_id"), "", "data.child_id", "pattern", id="id-empty"
    ),
    pytest.param(
        "child.found", ("data", "child_id"), "C" * 65, "data.child_id", "pattern", id="id-65"
    ),
    pytest.param(
        "forensic.examination_requested",
        ("data", "child_ids", 1),
        "bad/id",
        "data.child_ids[1]",
        "pattern",
        id="id-in-list",
    ),
    pytest.param(
        "incident.reported", ("data", "area"), "north east", "data.area", "pattern", id="area"
    ),
    pytest.param(
        "incident.reported",
        ("data", "category"),
        "burglary",
        "data.category",
        "domestic_abuse",
        id="enum",
    ),
    pytest.param(
        "child.missing",
        ("data", "risk_grade"),
        "HIGH",
        "data.risk_grade",
        "Input should be",
        id="enum-case",
    ),
    pytest.param(
        "referral.shared",
        ("data", "contents"),
        ["incident_details", "gossip"],
        "data.contents[1]",
        "Input should be",
        id="contents-enum",
    ),
    pytest.param(
        "referral.shared",
        ("data", "contents"),
        ["incident_details", "incident_details"],
        "data.contents",
        "unique",
        id="contents-duplicate",
    ),
    pytest.param(
        "referral.shared", ("data", "contents"), DELETE, "data.contents", "required", id="contents"
    ),
    pytest.param(
        "incident.reported",
        ("data", "incident_id"),
        DELETE,
        "data.incident_id",
        "required",
        id="missing-field",
    ),
    pytest.param(
        "custody.child_detained", ("data", "age"), DELETE, "data.age", "required", id="custody-age"
    ),
    pytest.param("child.found", ("data",), DELETE, "data", "required", id="missing-data"),
    pytest.param("child.found", ("data",), [], "data", "object", id="data-not-object"),
    pytest.param("child.found", ("id",), DELETE, "id", "required", id="missing-id"),
    pytest.param("child.found", ("id",), "", "id", "pattern", id="id-empty"),
    pytest.param("child.found", ("id",), "x" * 129, "id", "pattern", id="id-129"),
    pytest.param("child.found", ("id",), "Jane Doe 01/02/2010", "id", "pattern", id="id-text"),
    pytest.param("child.found", ("source",), "urn:a b", "source", "pattern", id="source-space"),
    pytest.param("child.found", ("source",), "urn:a\tb", "source", "pattern", id="source-ctl"),
    pytest.param("child.found", ("source",), "u" * 257, "source", "pattern", id="source-257"),
    pytest.param("child.found", ("specversion",), "0.3", "specversion", "'1.0'", id="specversion"),
    pytest.param(
        "child.found", ("specversion",), DELETE, "specversion", "required", id="no-specversion"
    ),
    pytest.param(
        "child.found",
        ("datacontenttype",),
        "text/plain",
        "datacontenttype",
        "application/json",
        id="content-type",
    ),
    pytest.param("child.found", ("subject",), "s" * 129, "subject", "pattern", id="subject"),
    pytest.param(
        "child.found", ("subject",), "Jane Doe, 1 High St", "subject", "pattern", id="subject-text"
    ),
    pytest.param("child.found", ("type",), "child.lost", "type", "child.found", id="unknown-type"),
    pytest.param("child.found", ("type",), DELETE, "type", "required", id="missing-type"),
    pytest.param(
        "child.found", ("time",), "2026-11-20T21:00:00", "time", "RFC 3339", id="naive-time"
    ),
    pytest.param("child.found", ("time",), "2026-11-20T21:00Z", "time", "RFC 3339", id="no-sec"),
    pytest.param("child.found", ("time",), "2026-11-20", "time", "RFC 3339", id="date-only"),
    pytest.param("child.found", ("time",), 1_700_000_000, "time", "RFC 3339", id="epoch"),
    pytest.param(
        "child.found", ("time",), "2026-11-20T21:20:00Z", "time", "5 minutes", id="6min-future"
    ),
    pytest.param(
        "child.found", ("time",), "2026-02-30T21:00:00Z", "time", "datetime", id="bad-date"
    ),
    pytest.param(
        "incident.reported", ("data", "children"), [], "data.children", "at least 1", id="0-kids"
    ),
    pytest.param(
        "incident.reported",
        ("data", "children"),
        [{"child_id": f"C-{i}", "present": True} for i in range(51)],
        "data.children",
        "at most 50",
        id="51-kids",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children"),
        [{"child_id": "C-1", "present": True}, {"child_id": "C-1", "present": False}],
        "data.children",
        "duplicate child_id",
        id="same-kid-twice",
    ),
    pytest.param(
        "forensic.examination_requested",
        ("data", "child_ids"),
        [f"C-{i}" for i in range(51)],
        "data.child_ids",
        "at most 50",
        id="51-child-ids",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "age"),
        18,
        "data.children[0].age",
        "less than or equal to 17",
        id="age-18",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "age"),
        -1,
        "data.children[0].age",
        "greater than or equal to 0",
        id="age-negative",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "age"),
        "8",
        "data.children[0].age",
        "valid integer",
        id="age-string",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "age"),
        8.0,
        "data.children[0].age",
        "valid integer",
        id="age-float",
    ),
    pytest.param(
        "custody.child_detained", ("data", "age"), 18, "data.age", "less than", id="custody-18"
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "present"),
        "yes",
        "data.children[0].present",
        "valid boolean",
        id="bool-yes",
    ),
    pytest.param(
        "incident.reported",
        ("data", "children", 0, "present"),
        1,
        "data.children[0].present",
        "valid boolean",
        id="bool-1",
    ),
    pytest.param(
        "custody.child_detained",
        ("data", "charged"),
        "true",
        "data.charged",
        "valid boolean",
        id="bool-string",
    ),
    pytest.param(
        "forensic.examination_requested",
        ("data", "contact_restricted"),
        None,
        "data.contact_restricted",
        "valid boolean",
        id="bool-null",
    ),
]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(("event_type", "path", "value", "loc", "fragment"), INVALID)
def test_invalid_event_is_rejected_with_its_location(  # noqa: PLR0917 - one per column
    parse: Callable[..., object],
    event_type: str,
    path: tuple[str | int, ...],
    value: object,
    loc: str,
    fragment: str,
) -> None:
    errors = errors_of(parse, with_change(event(event_type), path, value))
    assert [error_loc for error_loc, _ in errors] == [loc]
    assert fragment in errors[0][1]


def test_typo_reads_as_unknown_field() -> None:
    raw = with_change(event(), ("data", "children", 0, "chlid_id"), "C-1")
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, now=NOW)
    # Named by position: the name itself is the sender's text and could be anything.
    assert [str(error) for error in caught.value.errors] == [
        "data.children[0].<unknown field #1>: unknown field (extra fields not permitted)",
    ]


def test_unknown_fields_are_counted_per_object_and_never_named() -> None:
    raw = event()
    raw["Jane Doe 2011-04-01"] = 1
    raw["data"]["Jane Doe"] = 1
    raw["data"]["born 2011-04-01"] = 2
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, now=NOW)
    assert sorted(error.loc for error in caught.value.errors) == [
        "<unknown field #1>",
        "data.<unknown field #1>",
        "data.<unknown field #2>",
    ]
    assert "Jane" not in str(caught.value)


def test_unknown_type_names_the_allowed_types() -> None:
    (error,) = errors_of(parse_dict, event(type="child.lost"))
    assert error[0] == "type"
    assert all(name in error[1] for name in EventType)


def test_every_problem_is_reported() -> None:
    raw = event()
    raw["data"]["children"][0].update(age=18, present="yes")
    del raw["data"]["category"]
    assert {loc for loc, _ in errors_of(parse_dict, raw)} == {
        "data.children[0].age",
        "data.children[0].present",
        "data.category",
    }


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [
        (timedelta(days=-30), True),  # late reports are normal
        (timedelta(minutes=4), True),
        (timedelta(minutes=5), True),
        (timedelta(minutes=5, seconds=1), False),
        (timedelta(minutes=6), False),
    ],
)
def test_time_may_not_be_more_than_five_minutes_ahead_of_now(
    ahead: timedelta,
    *,
    accepted: bool,
) -> None:
    raw = event(time=(NOW + ahead).isoformat())
    if accepted:
        assert parse_event(raw, now=NOW).time == NOW + ahead
    else:
        assert errors_of(parse_dict, raw) == [
            ("time", "time is more than 5 minutes in the future"),
        ]


def test_time_offsets_are_kept_and_compared_as_instants() -> None:
    # 22:18+01:00 is 21:18Z: four minutes ahead of NOW, so accepted.
    parsed = parse_event(event(time="2026-11-20T22:18:00+01:00"), now=NOW)
    assert parsed.time == NOW + timedelta(minutes=4)


def test_without_injected_now_the_clock_is_used() -> None:
    soon = datetime.now(UTC) + timedelta(minutes=1)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert parse_event(event(time=soon.isoformat())).time == soon
    with pytest.raises(InvalidEvent):
        parse_event(event(time=later.isoformat()))


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="timezone-aware"):
        parse_event(event(), now=datetime(2026, 11, 20, 21, 14))  # noqa: DTZ001


def test_naive_datetime_object_is_rejected() -> None:
    raw = event(time=datetime(2026, 11, 20, 21, 0))  # noqa: DTZ001
    assert errors_of(parse_dict, raw) == [("time", "Input should have timezone info")]


def test_optional_fields_may_be_left_out() -> None:
    raw = event()
    del raw["datacontenttype"], raw["data"]["dash_risk"]
    parsed = parse_event(raw, now=NOW)
    assert parsed.datacontenttype is None
    assert parsed.subject is None
    visited = parse_event(event("offender.visited"), now=NOW)
    assert visited.data.outcome.value == "completed"  # type: ignore[union-attr]
    registered = parse_event(event("offender.registered"), now=NOW)
    assert registered.data.management.value == "active"  # type: ignore[union-attr]


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_requires_its_area(event_type: EventType) -> None:
    raw = event(event_type)
    del raw["data"]["area"]
    assert errors_of(parse_dict, raw) == [("data.area", "Field required")]


NEW_TYPES_BAD = [
    # (event type, field, bad value or DELETE, message fragment): each names its field.
    ("referral.supplemented", "referral_id", DELETE, "Field required"),
    ("referral.supplemented", "contents", [], "at least 1 item"),
    ("referral.supplemented", "contents", ["gossip"], "Input should be"),
    ("referral.supplemented", "contents", "risk_assessment", "valid list"),
    ("referral.decided", "decision", DELETE, "Field required"),
    ("referral.decided", "decision", "shrug", "Input should be"),
    ("referral.decided", "child_id", 7, "string"),
    ("child.missing_regraded", "risk_grade", DELETE, "Field required"),
    ("child.missing_regraded", "risk_grade", "extreme", "Input should be"),
    ("child.missing_regraded", "episode_id", "E 1", "pattern"),
    ("return_interview.shared", "episode_id", DELETE, "Field required"),
    ("return_interview.shared", "child_id", None, "string"),
    ("custody.accommodation_requested", "custody_id", DELETE, "Field required"),
    ("custody.accommodation_requested", "child_id", ["C-1"], "string"),
    ("custody.accommodation_refused", "reason", DELETE, "Field required"),
    ("custody.accommodation_refused", "reason", "full", "Input should be"),
    ("offender.visited", "outcome", "nobody_home", "Input should be"),
    ("offender.registered", "management", "passive", "Input should be"),
    ("offender.risk_assessed", "management", True, "Input should be"),
    ("incident.reported", "area", "north east", "pattern"),
    ("child.found", "area", 12, "string"),
]


@pytest.mark.parametrize(("event_type", "field", "value", "message"), NEW_TYPES_BAD)
def test_bad_input_of_the_new_fields_names_the_field(
    event_type: str, field: str, value: object, message: str
) -> None:
    raw = with_change(event(event_type), ("data", field), value)
    errors = errors_of(parse_dict, raw)
    assert len(errors) == 1
    assert errors[0][0].startswith(f"data.{field}")
    assert message in errors[0][1]


def test_empty_lists_where_the_contract_allows_them() -> None:
    raw = event("forensic.examination_requested")
    raw["data"]["child_ids"] = []
    assert parse_event(raw, now=NOW).data.child_ids == []  # type: ignore[union-attr]
    raw = event("referral.shared")
    raw["data"]["contents"] = []
    assert parse_event(raw, now=NOW).data.contents == []  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"not json", b"\xff\xfe", b'{"a": 1} trailing'],
)
def test_bad_json_is_malformed_not_merely_invalid(body: bytes) -> None:
    with pytest.raises(MalformedJSON) as caught:
        parse_event_json(body)
    assert [error.loc for error in caught.value.errors] == ["(root)"]


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null"])
def test_json_that_is_not_an_object_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event_json(body)
    assert not isinstance(caught.value, MalformedJSON)
    assert [str(error) for error in caught.value.errors] == ["(root): Input should be an object"]


def test_errors_never_quote_the_input() -> None:
    secret = "Jane Doe 2011-04-01"
    raw = event()
    raw["data"]["children"][0]["child_id"] = secret
    raw["data"]["children"][0]["present"] = secret
    raw["time"] = secret
    raw["id"] = secret
    raw["subject"] = secret
    raw["specversion"] = secret
    raw["datacontenttype"] = secret
    for parse in (parse_dict, parse_text):
        with pytest.raises(InvalidEvent) as caught:
            parse(raw)
        assert secret not in str(caught.value)
        assert all(secret not in error.msg for error in caught.value.errors)
        # The pydantic error (which quotes the input) is not chained into tracebacks.
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


def test_generic_envelope_takes_any_data_object_but_checks_attributes() -> None:
    generic = Envelope.model_validate(event(data={"anything": [1, 2]}), context={"now": NOW})
    assert generic.type is EventType.INCIDENT_REPORTED
    with pytest.raises(ValidationError) as caught:
        Envelope.model_validate(event(type="child.lost"), context={"now": NOW})
    assert [error.loc for error in format_validation_error(caught.value)] == ["type"]


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "(root)"),
        (("incident.reported", "data", "children", 0, "child_id"), "data.children[0].child_id"),
        (("data", "children", 0, "child_id"), "data.children[0].child_id"),
        (("incident.reported",), '["incident.reported"]'),  # a lone key is no tag
        (("data", "a.b"), 'data["a.b"]'),
        (("child_ids", 3), "child_ids[3]"),
    ],
)
def test_error_locations(loc: tuple[str | int, ...], path: str) -> None:
    error = ValidationError.from_exception_data(
        "Event",
        [{"type": "missing", "loc": loc, "input": None}],
    )
    assert [str(e) for e in format_validation_error(error)] == [f"{path}: Field required"]


# --- alerts ----------------------------------------------------------------------------


def raised(**changes: Any) -> AlertRaised:
    fields: dict[str, Any] = {
        "alert_id": deterministic_alert_id("welfare-check", "INC-77", "C-2001", key=KEY),
        "rule": "welfare-check",
        "severity": Severity.HIGH,
        "subject_kind": SubjectKind.CHILD,
        "child_id": "C-2001",
        "area": "north",
        "trigger": EventRef(source="urn:safeguard:source:control-room", id="inc-77"),
        "due_at": NOW + timedelta(hours=12),
        "raised_at": NOW + timedelta(hours=12, seconds=3),
        "summary": "Welfare check not recorded within 12 h of a domestic abuse incident",
    }
    return AlertRaised.model_validate(fields | changes)


def resolved(**changes: Any) -> AlertResolved:
    fields: dict[str, Any] = {
        "alert_id": raised().alert_id,
        "rule": "welfare-check",
        "resolved_at": NOW + timedelta(days=1),
        "fulfilled_at": NOW + timedelta(hours=20),
        "late_by_seconds": 8 * 3600,
        "fulfilment": {"source": "urn:safeguard:source:control-room", "id": "wc-77"},
    }
    return AlertResolved.model_validate(fields | changes)


def test_alert_id_is_deterministic_and_keyed() -> None:
    alert_id = deterministic_alert_id("welfare-check", "INC-77", "C-2001", key=KEY)
    assert alert_id == deterministic_alert_id("welfare-check", "INC-77", "C-2001", key=KEY)
    assert alert_id.startswith("al-")
    assert len(alert_id) == 35
    assert alert_id != deterministic_alert_id("welfare-check", "INC-77", "C-2002", key=KEY)
    # The separator keeps part boundaries: ("ab", "c") is not ("a", "bc").
    assert deterministic_alert_id("r", "ab", "c", key=KEY) != deterministic_alert_id(
        "r", "a", "bc", key=KEY
    )
    # Keyed: without the deployment's secret the id cannot be recomputed from a child id.
    other = deterministic_alert_id("welfare-check", "INC-77", "C-2001", key=b"another secret")
    assert other != alert_id
    unkeyed = hashlib.sha256(b"welfare-check\x1fINC-77\x1fC-2001")
    assert alert_id != f"al-{unkeyed.hexdigest()[:32]}"
    with pytest.raises(ValueError, match="key"):
        deterministic_alert_id("r", "a", key=b"")


def test_alert_raised_round_trip() -> None:
    message = alert_raised_event(raised())
    assert isinstance(message, AlertRaisedEvent)
    assert message.id == message.data.alert_id
    assert message.time == message.data.raised_at
    assert message.source == "urn:safeguard:risk"
    assert parse_alert(message.to_json()) == message
    assert parse_alert(message.model_dump_json()) == message
    assert parse_alert(message.model_dump(mode="json")) == message
    assert message.data.subject_id == "C-2001"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"fulfilment": None, "fulfilled_at": None, "resolved_by": "duty-manager@north"},
    ],
)
def test_alert_resolved_round_trip(changes: dict[str, Any]) -> None:
    message = alert_resolved_event(resolved(**changes), source="urn:safeguard:risk:test")
    assert isinstance(message, AlertResolvedEvent)
    assert message.id == f"{message.data.alert_id}:resolved"
    assert message.time == message.data.resolved_at
    assert parse_alert(message.to_json()) == message


def test_alert_time_is_not_checked_against_the_clock() -> None:
    far = raised(raised_at=datetime.now(UTC) + timedelta(days=400))
    assert parse_alert(alert_raised_event(far).to_json()).data == far


@pytest.mark.parametrize(
    "changes",
    [
        {"child_id": None},
        {"offender_id": "O-1"},
        {"subject_kind": "offender"},
        {"severity": "low"},
        {"rule": "Welfare Check"},
        {"due_at": "2026-11-21T09:14:00"},
        {"summary": ""},
    ],
)
def test_invalid_alert_raised(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        raised(**changes)


def test_pattern_alert_has_no_due_time() -> None:
    assert raised(rule="repeat-missing", due_at=None).due_at is None


@pytest.mark.parametrize(
    "changes",
    [
        {"late_by_seconds": -1},
        {"late_by_seconds": "5"},
        {"fulfilment": None},  # fulfilled_at without fulfilment
        {"fulfilled_at": None},  # fulfilment without fulfilled_at
        {"resolved_by": "someone"},  # both causes
        {"fulfilment": None, "fulfilled_at": None},  # neither cause
        {"resolved_by": "bad\nname", "fulfilment": None, "fulfilled_at": None},
    ],
)
def test_invalid_alert_resolved(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        resolved(**changes)


def test_parse_alert_errors() -> None:
    message = alert_raised_event(raised()).model_dump(mode="json")
    with pytest.raises(MalformedJSON):
        parse_alert(b"{")
    with pytest.raises(InvalidEvent) as caught:
        parse_alert(message | {"type": "incident.reported"})
    assert caught.value.errors[0].loc == "type"
    assert "alert.raised" in caught.value.errors[0].msg
    message["data"]["child_id"] = None
    with pytest.raises(InvalidEvent) as caught:
        parse_alert(message)
    assert [error.loc for error in caught.value.errors] == ["data"]


def test_severity_order_and_bump() -> None:
    assert sorted([Severity.CRITICAL, Severity.MEDIUM, Severity.HIGH]) == list(Severity)
    assert Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert Severity.CRITICAL >= Severity.HIGH >= Severity.HIGH
    assert max(Severity.HIGH, Severity.MEDIUM) is Severity.HIGH
    assert [s.bump() for s in Severity] == [Severity.HIGH, Severity.CRITICAL, Severity.CRITICAL]


# --- dead letters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "encoding"),
    [
        (b"C-2001", "C-2001", KeyEncoding.UTF8),
        (b"\xff\x00", "/wA=", KeyEncoding.BASE64),
        (None, None, None),
    ],
)
def test_dead_letter_from_record(
    key: bytes | None,
    text: str | None,
    encoding: KeyEncoding | None,
) -> None:
    letter = DeadLetter.from_record(
        reason=DeadLetterReason.INVALID_JSON,
        errors=[FieldError(loc="(root)", msg="Invalid JSON: expected value")],
        topic="safeguarding.events.v1",
        partition=3,
        offset=42,
        key=key,
        value=b'{"id": \xff',
        failed_at=NOW,
    )
    assert (letter.key, letter.key_encoding) == (text, encoding)
    assert letter.original_key() == key
    assert letter.value == '{"id": \ufffd'
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_dead_letter_rules() -> None:
    fields: dict[str, Any] = {
        "reason": "processing_error",
        "errors": [],
        "topic": "safeguarding.events.v1",
        "partition": 0,
        "offset": 0,
        "key": None,
        "key_encoding": None,
        "value": None,
        "failed_at": "2026-11-20T21:14:00Z",
    }
    assert DeadLetter.model_validate(fields).value is None  # a tombstone
    for bad in (
        {"key": "k"},
        {"key_encoding": "utf-8"},
        {"reason": "oops"},
        {"offset": -1},
        {"topic": "a topic"},
    ):
        with pytest.raises(ValidationError):
            DeadLetter.model_validate(fields | bad)


# --- robustness ------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(raw=JSON_VALUES)
def test_any_json_value_parses_or_raises_invalid_event(raw: object) -> None:
    with contextlib.suppress(InvalidEvent):
        parse_event(raw, now=NOW)


@given(body=st.binary())
def test_any_bytes_parse_or_raise_invalid_event(body: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        parse_event_json(body, now=NOW)


@given(choice=st.data(), value=JSON_VALUES)
def test_fuzzed_data_fields_fail_with_locations_under_data(
    choice: st.DataObject,
    value: object,
) -> None:
    raw = event(choice.draw(st.sampled_from(list(EventType))))
    raw["data"][choice.draw(st.sampled_from(sorted(raw["data"])))] = value
    errors: list[FieldError] = []
    try:
        parse_event(raw, now=NOW)
    except InvalidEvent as exc:
        errors = exc.errors
    assert all(error.loc.startswith("data") for error in errors)
