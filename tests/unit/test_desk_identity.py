"""Who a verified ID token names, and what the desk's settings allow outside development.

The protocol itself (PKCE, the token exchange, signatures, a provider that hangs or
lies) is tested against a real OpenID Provider: tests/integration/test_desk_oidc.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.auth import Role
from services.common.clock import FakeClock
from services.desk.errors import SignInFailed
from services.desk.identity import NoAccess, OidcIdentity, person_name, shown_name
from services.desk.settings import DeskSettings, OidcSettings

OIDC = {
    "issuer": "https://login.example.invalid/tenant/v2.0",
    "client_id": "desk",
    "client_secret": "a-client-secret",
    "redirect_url": "https://desk.example.invalid/console/sign-in/callback",
    "group_roles": {"duty": ["read", "acknowledge", "resolve"], "dpo": ["audit"]},
    "group_areas": {"north": ["north"], "south": ["south"], "everywhere": ["*"]},
}


def identity() -> OidcIdentity:
    return OidcIdentity(OidcSettings.model_validate(OIDC), FakeClock(datetime.now(UTC)))


def test_groups_give_roles_and_areas_together() -> None:
    person = (
        identity()
        .person(
            {"sub": "abc-123", "name": "Alice Okafor", "groups": ["duty", "north", "unrelated"]}
        )
        .principal
    )
    assert person.name == "abc-123"
    assert person.kind == "person"
    assert person.shown_as == "Alice Okafor"
    assert person.roles == {Role.READ, Role.ACKNOWLEDGE, Role.RESOLVE}
    assert person.areas == {"north"}
    both = identity().person({"sub": "b", "groups": ["duty", "north", "south"]}).principal
    assert both.areas == {"north", "south"}
    everywhere = identity().person({"sub": "c", "groups": ["duty", "everywhere"]}).principal
    assert everywhere.areas is None
    auditor = identity().person({"sub": "d", "groups": ["dpo"]}).principal
    assert auditor.roles == {Role.AUDIT}
    assert auditor.shown_as == "d"  # no name claim: the subject


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "e", "groups": []},
        {"sub": "e"},
        {"sub": "e", "groups": "duty"},  # not a list
        {"sub": "e", "groups": ["north"]},  # an area, no role
        {"sub": "e", "groups": ["duty"]},  # roles, no area
        {"sub": "e", "groups": ["Duty", "NORTH"]},  # names are matched exactly
    ],
)
def test_without_a_mapped_role_and_area_nobody_gets_in(claims: dict[str, object]) -> None:
    with pytest.raises(NoAccess) as refused:
        identity().person(claims)
    assert refused.value.account == "e"


def test_a_token_naming_nobody_is_refused() -> None:
    with pytest.raises(SignInFailed):
        identity().person({"groups": ["duty", "north"]})
    with pytest.raises(SignInFailed):
        identity().person({"sub": "", "groups": ["duty", "north"]})


def test_subjects_and_names_are_made_safe_to_record_and_show() -> None:
    assert person_name("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ") == (
        "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
    )
    hashed = person_name("auth0|5f7c8ec7c33c6c004bbafe82")
    assert hashed.startswith("sub-")
    assert len(hashed) == 44
    assert person_name("x" * 65).startswith("sub-")
    # Control and format characters (a right-to-left override) are dropped.
    assert shown_name("Alice\u0000 \u202eOkafor\n", "s") == "Alice Okafor"
    assert shown_name(None, "s") == "s"
    assert shown_name("\u0007", "s") == "s"
    assert len(shown_name("A" * 500, "s")) == 128


def test_outside_development_people_sign_in_with_openid_connect_over_https(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAFEGUARD_ENV", "production")
    base = {"tokens_file": tmp_path / "t.yaml", "database_url": "postgresql://x/y"}
    with pytest.raises(ValidationError, match="DESK_OIDC__ISSUER is not set"):
        DeskSettings(**base)
    with pytest.raises(ValidationError, match="DESK_TOKEN_SIGN_IN is on"):
        DeskSettings(**base, oidc=OIDC, token_sign_in=True)
    with pytest.raises(ValidationError, match="DESK_OIDC__ISSUER is http://"):
        DeskSettings(**base, oidc={**OIDC, "issuer": "http://login.example.invalid"})
    settings = DeskSettings(**base, oidc=OIDC)
    assert not settings.tokens_sign_in
    assert DeskSettings(**base, serve=False).oidc is None  # a projector serves no console
    with pytest.raises(ValidationError, match="maps no group"):
        OidcSettings.model_validate({**OIDC, "group_roles": {}})
    with pytest.raises(ValidationError, match="must include openid"):
        OidcSettings.model_validate({**OIDC, "scopes": "profile"})
    monkeypatch.setenv("SAFEGUARD_ENV", "development")
    assert DeskSettings(**base).tokens_sign_in
