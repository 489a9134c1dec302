"""Ingest settings: tokens from a file or from INGEST_TOKENS, exactly one of them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from devtools.stack import DEV_TOKEN, DEV_TOKENS_FILE
from services.common.auth import hash_token
from services.ingest.settings import IngestSettings


def test_tokens_from_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_TOKENS_FILE", str(DEV_TOKENS_FILE))
    principal = IngestSettings().authenticator().authenticate(f"Bearer {DEV_TOKEN}")
    assert principal is not None
    assert principal.may_send_for("urn:any")


def test_tokens_from_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {
            "name": "north",
            "sha256": hash_token("s3cret"),
            "sources": ["urn:north"],
            "roles": ["send"],
        }
    ]
    monkeypatch.setenv("INGEST_TOKENS", json.dumps(entries))
    auth = IngestSettings().authenticator()
    principal = auth.authenticate("Bearer s3cret")
    assert principal is not None
    assert principal.may_send_for("urn:north")
    assert not principal.may_send_for("urn:south")
    assert auth.authenticate(f"Bearer {DEV_TOKEN}") is None


def test_exactly_one_token_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INGEST_TOKENS_FILE", "INGEST_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="INGEST_TOKENS_FILE"):
        IngestSettings()
    monkeypatch.setenv("INGEST_TOKENS_FILE", str(DEV_TOKENS_FILE))
    monkeypatch.setenv("INGEST_TOKENS", "[]")
    with pytest.raises(ValidationError, match="exactly one"):
        IngestSettings()
