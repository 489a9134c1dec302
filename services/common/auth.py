"""Bearer tokens: who may send which events for which sources, and who may act on alerts.

Only SHA-256 hashes of tokens are configured, so a leaked configuration does not leak
tokens. A presented token is hashed and compared with every configured hash in constant
time; the token itself is never logged or stored.

Each token has scopes (docs/contract.md): the `sources` it may send for, the event
`types` it may send and the `areas` whose alerts it may read, acknowledge and resolve.
`types` and `areas` absent means all. One deployment serves one safeguarding
partnership, so "all areas" is the partnership's areas, never another force's.

Outside development mode (services.common.environment) a token file holding the
published development token or a `"*"` source is refused at start-up, and so is an
entry not minted by `safeguard token new` (`minted: safeguard-token/v1`). A hash cannot
show how strong its token is, so strength is made a property of how tokens are made:
the command draws 256 random bits (`sgt_` and 43 base64url characters) and writes the
entry with the marker; outside development a presented token must have that form too,
so a hand-chosen password hashed into the file with a copied marker still matches
nothing unless it imitates the form on purpose. The marker is an attestation by whoever
wrote the file, not a proof: the README says so.

People are principals too (`kind: person`): the desk's console signs them in with
OpenID Connect and builds their principal from the ID token (services.desk.identity);
`name` is then their subject identifier and `display_name` what they are called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.envelope import AreaCode, EventType
from services.common import yaml_text
from services.common.environment import ENV_VARIABLE, is_development


class Role(StrEnum):
    """What a token may do beyond sending events."""

    SEND = "send"
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    AUDIT = "audit"  # search the audit trail (a data-protection officer)
    ADMIN = "admin"  # see receivers' addresses (emails, webhook URLs) where they are shown
    LEAD = "lead"  # a strategic lead: the assurance pack of their areas, nothing else


Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

#: SHA-256 of `safeguard-dev-token`, the token published in the README for development.
DEVELOPMENT_TOKEN_SHA256 = "8506eb5520e4fe5822526ab5842bd28e837c46634f2e317458bd261010e15bdf"  # noqa: S105
ANY_SOURCE = "*"
#: What `safeguard token new` writes into each entry it makes (see the module docstring).
MINTED = "safeguard-token/v1"
TOKEN_PREFIX = "sgt_"  # noqa: S105 - the form of a token, not one
TOKEN_BYTES = 32  # 256 bits; the contract's floor is 128
_MINTED_FORM = re.compile(r"^sgt_[A-Za-z0-9_-]{43}$")


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
    minted: Literal["safeguard-token/v1"] | None = Field(
        default=None,
        description="written by `safeguard token new` (256 random bits); required outside "
        "development",
    )


class TokenFile(BaseModel):
    """The token configuration file."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(min_length=1)


class Principal(BaseModel):
    """Who is asking: a system's token, or a person signed in to the console.

    `name` is the only thing about it that is logged and the `actor` of its audit
    records: a token's name, or a person's subject identifier at the identity provider.
    `display_name` (people only) is shown on pages and in acknowledgements, never logged.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    sources: tuple[str, ...]
    roles: frozenset[Role]
    types: frozenset[str] | None = None
    areas: frozenset[str] | None = None
    kind: Literal["token", "person"] = "token"
    display_name: str | None = None

    @property
    def shown_as(self) -> str:
        """Return what pages and acknowledgements call this caller."""
        return self.display_name or self.name

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
        """Tell whether this caller may see (and, with the role, act on) a thing of `area`.

        Fail closed: a thing without an area is seen only by callers for every area
        (no `areas` scope), as is a thing of an area outside the caller's.
        """
        return self.areas is None or (area is not None and area in self.areas)

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
        if entry.minted != MINTED:
            problems.append(
                f"token {entry.name!r} was not made by `safeguard token new` (no `minted: "
                f"{MINTED}`): tokens must hold 256 random bits"
            )
    return problems


def check_production_tokens(entries: list[TokenEntry], *, development: bool) -> None:
    """Refuse, outside development mode, the development token, `"*"` and unminted tokens."""
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


def new_token() -> str:
    """Return a new token: `sgt_` and 256 random bits, base64url without padding."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode()
    return TOKEN_PREFIX + raw


def minted_entry(  # noqa: PLR0913 - one argument per scope
    name: str,
    token: str,
    *,
    roles: frozenset[Role],
    sources: tuple[str, ...] = (),
    types: frozenset[EventType] | None = None,
    areas: frozenset[str] | None = None,
) -> TokenEntry:
    """Return the token file's entry for a token made by `new_token` (hash and marker)."""
    if not _MINTED_FORM.fullmatch(token):
        raise TokenConfigError("only tokens made by new_token() are written with the marker")
    return TokenEntry(
        name=name,
        sha256=hash_token(token),
        sources=sources,
        roles=roles,
        types=types,
        areas=areas,
        minted=MINTED,
    )


class Authenticator:
    """Maps an Authorization header to a Principal."""

    def __init__(self, entries: list[TokenEntry], *, development: bool | None = None) -> None:
        if not entries:
            raise TokenConfigError("no tokens configured: every request would be refused")
        check_production_tokens(
            entries, development=is_development() if development is None else development
        )
        self._entries = [(bytes.fromhex(e.sha256), e) for e in entries]
        self._development = is_development() if development is None else development

    @classmethod
    def from_file(cls, path: Path, *, development: bool | None = None) -> Authenticator:
        """Load tokens from a YAML or JSON file."""
        try:
            raw = yaml_text.load(path.read_text())
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
        if not self._development and not _MINTED_FORM.fullmatch(token.strip()):
            return None  # not one `safeguard token new` made: it cannot be a configured one
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
