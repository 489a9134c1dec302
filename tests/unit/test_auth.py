"""Bearer tokens: hashes only, constant-time lookup, sources and roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.auth import (
    MINTED,
    Authenticator,
    Principal,
    Role,
    TokenConfigError,
    TokenEntry,
    hash_token,
    minted_entry,
    new_token,
)
from services.common.environment import is_development

ENTRIES = [
    TokenEntry(
        name="control-room",
        sha256=hash_token("cr-secret"),
        sources=("urn:a",),
        roles=frozenset({Role.SEND}),
    ),
    TokenEntry(
        name="duty",
        sha256=hash_token("duty-secret"),
        roles=frozenset({Role.READ, Role.ACKNOWLEDGE}),
    ),
]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic cr-secret",
        "Bearer wrong",
        "Bearer cr-secret\udcff",
        "Bearer ü",
    ],
)
def test_unknown_or_malformed_headers_identify_nobody(header: str | None) -> None:
    assert Authenticator(ENTRIES).authenticate(header) is None


def test_a_token_identifies_its_caller_with_its_sources_and_roles() -> None:
    auth = Authenticator(ENTRIES)
    caller = auth.authenticate("Bearer cr-secret")
    assert caller is not None
    assert caller.name == "control-room"
    assert caller.may_send_for("urn:a")
    assert not caller.may_send_for("urn:b")
    duty = auth.authenticate("bearer  duty-secret ")
    assert duty is not None
    assert duty.has(Role.ACKNOWLEDGE)
    assert not duty.has(Role.RESOLVE)
    assert not duty.may_send_for("urn:a")  # no send role


def test_token_files_hold_hashes_and_bad_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "tokens.yaml"
    good.write_text(
        f"tokens:\n  - name: dev\n    sha256: {hash_token('t')}\n    sources: ['*']\n    roles: [send]\n"
    )
    caller = Authenticator.from_file(good).authenticate("Bearer t")
    assert caller is not None
    assert caller.may_send_for("urn:anything")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens:\n  - name: dev\n    sha256: not-a-hash\n")
    with pytest.raises(TokenConfigError, match=r"bad\.yaml"):
        Authenticator.from_file(bad)
    with pytest.raises(TokenConfigError, match="no tokens"):
        Authenticator([])


# --- scopes: event types and areas ---------------------------------------------------------


MINTED_TOKEN = new_token()


def scoped(**scopes: object) -> Authenticator:
    entry = TokenEntry.model_validate(
        {
            "name": "scoped",
            "sha256": hash_token(MINTED_TOKEN),
            "sources": ["urn:a"],
            "roles": ["send", "read", "acknowledge"],
            "minted": MINTED,
            **scopes,
        }
    )
    return Authenticator([entry], development=False)


def caller(**scopes: object) -> Principal:
    principal = scoped(**scopes).authenticate(f"Bearer {MINTED_TOKEN}")
    assert principal is not None
    return principal


def test_types_limit_what_a_token_may_send_and_absent_means_all() -> None:
    limited = caller(types=["child.found"])
    assert limited.may_send_type("child.found")
    assert not limited.may_send_type("referral.shared")
    assert caller().may_send_type("referral.shared")
    reader = Principal(name="r", sources=(), roles=frozenset({Role.READ}))
    assert not reader.may_send_type("child.found")  # no send role at all


def test_areas_limit_what_a_token_sees_and_fail_closed_without_an_area() -> None:
    north = caller(areas=["north"])
    assert north.may_see_area("north")
    assert not north.may_see_area("south")
    assert not north.may_see_area(None)  # no area: callers for every area only
    everywhere = caller()
    assert everywhere.may_see_area("south")
    assert everywhere.may_see_area(None)
    assert not caller(areas=[]).may_see_area("north")
    assert north.may(Role.ACKNOWLEDGE, "north")
    assert not north.may(Role.ACKNOWLEDGE, "south")
    assert not north.may(Role.RESOLVE, "north")  # the role is still needed


def test_unknown_types_and_bad_areas_are_refused_when_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f"tokens:\n  - name: t\n    sha256: {hash_token('t')}\n    types: [child.lost]\n"
    )
    with pytest.raises(TokenConfigError, match="types"):
        Authenticator.from_file(path)
    path.write_text(
        f"tokens:\n  - name: t\n    sha256: {hash_token('t')}\n    areas: ['north east']\n"
    )
    with pytest.raises(TokenConfigError, match="areas"):
        Authenticator.from_file(path)


# --- development mode ----------------------------------------------------------------------

DEV_FILE = Path(__file__).resolve().parents[2] / "config" / "dev-tokens.yaml"


def test_outside_development_the_dev_token_and_star_sources_are_refused_by_name() -> None:
    with pytest.raises(TokenConfigError) as caught:
        Authenticator.from_file(DEV_FILE, development=False)
    message = str(caught.value)
    assert "dev-tokens.yaml" in message
    assert "'development' is the published development token" in message
    assert "may send for any source ('*')" in message
    assert "SAFEGUARD_ENV=development" in message
    for name in ("duty-north", "duty-south", "police-control-room", "childrens-services"):
        assert f"token {name!r} was not made by `safeguard token new`" in message
    star = TokenEntry(name="any", sha256=hash_token("x"), sources=("*",))
    with pytest.raises(TokenConfigError, match="'any' may send for any source"):
        Authenticator([star], development=False)
    Authenticator([star], development=True)
    Authenticator.from_file(DEV_FILE, development=True)


def test_development_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAFEGUARD_ENV", raising=False)
    assert not is_development()
    with pytest.raises(TokenConfigError):
        Authenticator.from_file(DEV_FILE)
    monkeypatch.setenv("SAFEGUARD_ENV", "production")
    assert not is_development()
    monkeypatch.setenv("SAFEGUARD_ENV", "Development")
    assert is_development()
    Authenticator.from_file(DEV_FILE)


# --- token strength -------------------------------------------------------------------------


def test_new_tokens_hold_256_random_bits_in_one_form() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("sgt_")
        assert len(token) == 47  # 43 base64url characters: 258 bits of room, 256 drawn
        assert set(token[4:]) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_outside_development_only_minted_entries_and_tokens_of_their_form_pass() -> None:
    token = new_token()
    entry = minted_entry("system", token, roles=frozenset({Role.READ}))
    auth = Authenticator([entry], development=False)
    assert auth.authenticate(f"Bearer {token}") is not None
    # A hand-made entry for a weak token is refused at start-up, naming it.
    weak = TokenEntry(name="weak", sha256=hash_token("hunter2"), roles=frozenset({Role.READ}))
    with pytest.raises(TokenConfigError, match="'weak' was not made by `safeguard token new`"):
        Authenticator([weak], development=False)
    # A copied marker on a weak token's hash: the weak token still matches nothing.
    copied = weak.model_copy(update={"minted": MINTED})
    assert Authenticator([copied], development=False).authenticate("Bearer hunter2") is None
    assert Authenticator([copied], development=True).authenticate("Bearer hunter2") is not None
    with pytest.raises(TokenConfigError, match="new_token"):
        minted_entry("weak", "hunter2", roles=frozenset({Role.READ}))
