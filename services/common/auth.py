"""Bearer tokens: who may send which events for which sources, and who may act on alerts.

Only SHA-256 hashes of tokens are configured, so a leaked configuration does not leak
tokens. A presented token is hashed and compared with every configured hash in constant
time; the token itself is never logged or stored.

Each token has scopes (docs/contract.md): the `sources` it may send for, the event
`types` it may send and the `areas` whose alerts it may read, acknowledge and resolve.
`types` and `areas` absent means all. One deployment serves one safeguarding
partnership, so "all areas" is the partnership's areas, never another force's.

Outside development mode (services.common.environment) a token file holding the
published development token or a `"*"` source is refused at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.envelope import AreaCode, EventType
from services.common.environment import ENV_VARIABLE, is_development


class Role(StrEnum):
    """What a token may do beyond sending events."""

    SEND = "send"
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    AUDIT = "audit"  # search the audit trail (a data-protection officer)
    LEAD = "lead"  # a strategic lead: the assurance pack of their areas, nothing else


Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

#: SHA-256 of `safeguard-dev-token`, the token published in the README for development.
DEVELOPMENT_TOKEN_SHA256 = "8506eb5520e4fe5822526ab5842bd28e837c46634f2e317458bd261010e15bdf"  # noqa: S105
ANY_SOURCE = "*"


class TokenEntry(BaseModel):
    """One configured token: its hash, a label for logs, and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    sha256: Sha256Hex
    sources: tuple[str, ...] = Field(default=(), description="sources it may send for; '*' is any")
    roles: frozenset[Role] = frozenset()
    types: frozenset[EventType] | None = Field(
        default=None, description="event types it may send; absent means every type"
    )
    areas: frozenset[AreaCode] | None = Field(
        default=None,
        description="areas whose alerts it may read, acknowledge and resolve; absent means all",
    )


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
    types: frozenset[str] | None = None
    areas: frozenset[str] | None = None

    def may_send_for(self, source: str) -> bool:
        """Tell whether this caller may send events for `source`."""
        return Role.SEND in self.roles and (ANY_SOURCE in self.sources or source in self.sources)

    def may_send_type(self, event_type: str) -> bool:
        """Tell whether this caller may send events of type `event_type`."""
        return Role.SEND in self.roles and (self.types is None or event_type in self.types)

    def has(self, role: Role) -> bool:
        """Tell whether this caller holds `role`."""
        return role in self.roles

    def may_see_area(self, area: str | None) -> bool:
        """Tell whether this caller may see (and, with the role, act on) an alert of `area`.

        An alert without an area is everyone's business: every token sees it. A token
        without an `areas` scope sees every area.
        """
        return area is None or self.areas is None or area in self.areas

    def may(self, role: Role, area: str | None) -> bool:
        """Tell whether this caller holds `role` for an alert (or child view) of `area`."""
        return self.has(role) and self.may_see_area(area)


class TokenConfigError(ValueError):
    """The token configuration is missing or invalid."""


def development_only_problems(entries: list[TokenEntry]) -> list[str]:
    """Name every entry that is acceptable in development mode only, and why."""
    problems: list[str] = []
    for entry in entries:
        if hmac.compare_digest(entry.sha256, DEVELOPMENT_TOKEN_SHA256):
            problems.append(f"token {entry.name!r} is the published development token")
        if ANY_SOURCE in entry.sources:
            problems.append(f"token {entry.name!r} may send for any source ('*')")
    return problems


def check_production_tokens(entries: list[TokenEntry], *, development: bool) -> None:
    """Refuse, outside development mode, the development token and `"*"` sources."""
    if development:
        return
    problems = development_only_problems(entries)
    if problems:
        raise TokenConfigError(
            "refusing to start: "
            + "; ".join(problems)
            + f". These are allowed only when {ENV_VARIABLE}=development; production "
            "tokens are generated per client and list their sources explicitly."
        )


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token, the form in which tokens are configured."""
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Maps an Authorization header to a Principal."""

    def __init__(self, entries: list[TokenEntry], *, development: bool | None = None) -> None:
        if not entries:
            raise TokenConfigError("no tokens configured: every request would be refused")
        check_production_tokens(
            entries, development=is_development() if development is None else development
        )
        self._entries = [(bytes.fromhex(e.sha256), e) for e in entries]

    @classmethod
    def from_file(cls, path: Path, *, development: bool | None = None) -> Authenticator:
        """Load tokens from a YAML or JSON file."""
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TokenConfigError(f"cannot read token file {path}: {exc}") from exc
        try:
            parsed = TokenFile.model_validate(raw)
        except ValidationError as exc:
            raise TokenConfigError(f"invalid token file {path}: {exc}") from exc
        try:
            return cls(parsed.tokens, development=development)
        except TokenConfigError as exc:
            raise TokenConfigError(f"token file {path}: {exc}") from None

    def roles_of(self, name: str) -> frozenset[Role] | None:
        """Return the roles of the token named `name` (None: no such token), for reports."""
        found = next((e for _, e in self._entries if e.name == name), None)
        return None if found is None else found.roles

    def areas_of(self, name: str) -> frozenset[str] | None:
        """Return the areas the token named `name` is scoped to (None: every area, or none)."""
        found = next((e for _, e in self._entries if e.name == name), None)
        return None if found is None else found.areas

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
        return Principal(
            name=found.name,
            sources=found.sources,
            roles=found.roles,
            types=None if found.types is None else frozenset(found.types),
            areas=found.areas,
        )
