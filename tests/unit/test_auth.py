"""Bearer tokens: hashes only, constant-time lookup, sources and roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.auth import Authenticator, Role, TokenConfigError, TokenEntry, hash_token

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
