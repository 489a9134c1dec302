"""Scopes on the read and act pages: the refusal for each caller, role and area."""

from __future__ import annotations

import pytest

from schemas.audit import AuditAction
from services.common.access import audit_action, require, visible
from services.common.auth import Authenticator, Principal, Role
from tests.fixtures.tokens import CALLERS, TokenSet

ACTING = frozenset({Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE})
NORTH = Principal(name="duty-north", sources=(), roles=ACTING, areas=frozenset({"north"}))
EVERYWHERE = Principal(name="duty-all", sources=(), roles=ACTING)
READER = Principal(name="reader", sources=(), roles=frozenset({Role.READ}))


def test_no_token_is_a_401_with_the_challenge() -> None:
    refusal = require(None, Role.READ)
    assert refusal is not None
    assert (refusal.status, refusal.body["error"]) == (401, "unauthenticated")
    assert refusal.headers["WWW-Authenticate"] == 'Bearer realm="safeguard"'


def test_a_missing_role_is_a_403_naming_the_role() -> None:
    refusal = require(READER, Role.ACKNOWLEDGE, "north")
    assert refusal is not None
    assert refusal.status == 403
    assert "'acknowledge'" in refusal.body["message"]
    assert refusal.body["errors"] == [
        {"loc": "(root)", "msg": "this token may not acknowledge alerts"}
    ]


@pytest.mark.parametrize("role", [Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE])
def test_another_area_is_a_403_naming_the_area(role: Role) -> None:
    refusal = require(NORTH, role, "south")
    assert refusal is not None
    assert refusal.status == 403
    assert refusal.body["errors"][0]["loc"] == "area"
    assert "south" in refusal.body["errors"][0]["msg"]
    assert require(NORTH, role, "north") is None
    assert require(NORTH, role, None) is None  # no area: everyone's
    assert require(EVERYWHERE, role, "south") is None


def test_lists_keep_what_the_caller_may_see() -> None:
    alerts = [{"id": 1, "area": "north"}, {"id": 2, "area": "south"}, {"id": 3, "area": None}]
    assert [a["id"] for a in visible(NORTH, alerts, lambda a: a["area"])] == [1, 3]
    assert [a["id"] for a in visible(EVERYWHERE, alerts, lambda a: a["area"])] == [1, 2, 3]


def test_each_acting_role_has_its_audit_action() -> None:
    assert audit_action(Role.READ) is AuditAction.ALERT_VIEWED
    assert audit_action(Role.ACKNOWLEDGE) is AuditAction.ALERT_ACKNOWLEDGED
    assert audit_action(Role.RESOLVE) is AuditAction.ALERT_RESOLVED


@pytest.mark.parametrize("role", [Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE])
@pytest.mark.parametrize("area", ["north", "south", None])
def test_the_matrix_helper_agrees_with_the_pages_checks(role: Role, area: str | None) -> None:
    # tests/fixtures/tokens.py predicts statuses for the page matrix tests; it must say
    # what `require` decides, caller by caller.
    tokens = TokenSet.matrix()
    auth = Authenticator(tokens.entries(), development=False)
    for caller in CALLERS:
        header = tokens.header(caller).get("Authorization")
        refusal = require(auth.authenticate(header), role, area)
        status = 200 if refusal is None else refusal.status
        assert status == tokens.expected(caller, role, area=area), caller
