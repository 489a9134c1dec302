"""Bearer tokens: who may send events for which sources, and who may act on alerts.

Only SHA-256 hashes of tokens are configured, so a leaked configuration does not leak
tokens. A presented token is hashed and compared with every configured hash in constant
time; the token itself is never logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError


class Role(StrEnum):
    """What a token may do beyond sending events."""

    SEND = "send"
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class TokenEntry(BaseModel):
    """One configured token: its hash, a label for logs, and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    sha256: Sha256Hex
    sources: tuple[str, ...] = Field(default=(), description="sources it may send for; '*' is any")
    roles: frozenset[Role] = frozenset()


class TokenFile(BaseModel):
    """The token configuration file."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(min_length=1)


class Principal(BaseModel):
    """The caller a token identifies; `name` is the only thing about it that is logged."""

    model_config = ConfigDict(frozen=True)

    name: str
    sources: tuple[str, ...]
    roles: frozenset[Role]

    def may_send_for(self, source: str) -> bool:
        """Tell whether this caller may send events for `source`."""
        return Role.SEND in self.roles and ("*" in self.sources or source in self.sources)

    def has(self, role: Role) -> bool:
        """Tell whether this caller holds `role`."""
        return role in self.roles


class TokenConfigError(ValueError):
    """The token configuration is missing or invalid."""


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, the form in which tokens are configured."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Maps an Authorization header to a Principal."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        if not entries:
            raise TokenConfigError("no tokens configured: every request would be refused")
        self._entries = [(bytes.fromhex(e.sha256), e) for e in entries]

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        """Load tokens from a YAML or JSON file."""
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TokenConfigError(f"cannot read token file {path}: {exc}") from exc
        try:
            parsed = TokenFile.model_validate(raw)
        except ValidationError as exc:
            raise TokenConfigError(f"invalid token file {path}: {exc}") from exc
        return cls(parsed.tokens)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """Return the caller for an `Authorization: Bearer ...` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        # A header with characters no token has cannot match; "replace" keeps it a 401.
        presented = hashlib.sha256(token.strip().encode(errors="replace")).digest()
        found: TokenEntry | None = None
        # Compare against every entry so timing does not reveal which one matched.
        for digest, entry in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = entry
        if found is None:
            return None
        return Principal(name=found.name, sources=found.sources, roles=found.roles)
