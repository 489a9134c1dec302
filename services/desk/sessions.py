"""Console sign-in: who the person is (an identity provider), and their session in PostgreSQL.

The identity step is a seam (`IdentityProvider`): today a bearer token from the token
file is typed in once and exchanged for a session; an OIDC provider replaces it by
implementing the same protocol, its `complete` taking the callback's parameters and
returning the same `SignedIn` (a `Principal` built from the ID token's roles and areas
claims). Nothing else in the console knows how someone signed in.

Sessions live in the database, so any desk pod serves any request and a restart signs
nobody out. The cookie holds a random id; the table holds only its SHA-256, so a copy of
the table opens no session. A session ends when unused for the idle limit, at its
maximum age (a shift), at sign-out, or when its principal opens more than the cap allows
(the oldest goes first): one token signing in ten thousand times evicts only its own
sessions. Each session has its own CSRF token, checked on every form POST.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from services.common.auth import Authenticator, Principal
from services.common.clock import Clock
from services.desk.database import Database
from services.desk.metrics import DeskMetrics
from services.desk.schema import sessions

SESSION_COOKIE = "safeguard_session"
PRE_SESSION_COOKIE = "safeguard_signin"


@dataclass(frozen=True)
class SignedIn:
    """A person the identity provider vouched for."""

    principal: Principal


class IdentityProvider(Protocol):
    """Turns what the sign-in step returns into a signed-in person (or None)."""

    @property
    def fields(self) -> tuple[str, ...]:
        """Return the form fields the sign-in page asks for (none for a redirect flow)."""
        ...

    def complete(self, submitted: Mapping[str, str]) -> SignedIn | None:
        """Return who signed in from the submitted fields (or callback parameters)."""
        ...


class TokenIdentity:
    """Sign-in with a bearer token of the token file: checked once, then a session."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    @property
    def fields(self) -> tuple[str, ...]:
        """Return the one field: the token."""
        return ("token",)

    def complete(self, submitted: Mapping[str, str]) -> SignedIn | None:
        """Return the token's principal, or None for a token nobody configured."""
        token = submitted.get("token", "").strip()
        if not token:
            return None
        principal = self._auth.authenticate(f"Bearer {token}")
        return None if principal is None else SignedIn(principal)


@dataclass(frozen=True)
class Session:
    """One signed-in person."""

    id_hash: str
    principal: Principal
    csrf: str
    created: datetime
    last_seen: datetime


def hash_id(session_id: str) -> str:
    """Return what the table keeps of a session id."""
    return hashlib.sha256(session_id.encode(errors="replace")).hexdigest()


@dataclass(frozen=True)
class Lifetimes:
    """How long sessions last, and how many one principal may hold."""

    idle: timedelta
    max_age: timedelta
    per_principal: int


class SessionStore:
    """Sessions in PostgreSQL, read through an injected clock."""

    def __init__(
        self, database: Database, clock: Clock, lifetimes: Lifetimes, metrics: DeskMetrics
    ) -> None:
        self.database = database
        self.clock = clock
        self.lifetimes = lifetimes
        self.metrics = metrics

    async def start(self, who: SignedIn) -> tuple[str, Session]:
        """Open a session; return the id for the cookie (never stored) and the session."""
        now = self.clock.now()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            id_hash=hash_id(session_id),
            principal=who.principal,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        name = who.principal.name
        async with self.database.write() as connection:
            await connection.execute(
                insert(sessions).values(
                    id_hash=session.id_hash,
                    principal=name,
                    identity=who.principal.model_dump(mode="json"),
                    csrf=session.csrf,
                    created_at=now,
                    last_seen_at=now,
                )
            )
            # The principal's sessions beyond the cap, oldest first, and expired ones.
            keep = (
                select(sessions.c.id_hash)
                .where(sessions.c.principal == name)
                .order_by(sessions.c.created_at.desc(), sessions.c.id_hash)
                .limit(self.lifetimes.per_principal)
            )
            evicted = await connection.execute(
                delete(sessions).where(
                    sessions.c.principal == name, sessions.c.id_hash.not_in(keep)
                )
            )
            await connection.execute(delete(sessions).where(self._expired(now)))
        self.metrics.sessions_started.inc()
        if evicted.rowcount:
            self.metrics.sessions_evicted.inc(evicted.rowcount)
        return session_id, session

    def _expired(self, now: datetime) -> ColumnElement[bool]:
        return (sessions.c.last_seen_at <= now - self.lifetimes.idle) | (
            sessions.c.created_at <= now - self.lifetimes.max_age
        )

    async def find(self, session_id: str | None) -> Session | None:
        """Return the live session a cookie names, touching it; None if absent or expired."""
        if not session_id:
            return None
        now = self.clock.now()
        async with self.database.write() as connection:
            row = (
                await connection.execute(
                    update(sessions)
                    .where(
                        and_(
                            sessions.c.id_hash == hash_id(session_id),
                            sessions.c.last_seen_at > now - self.lifetimes.idle,
                            sessions.c.created_at > now - self.lifetimes.max_age,
                        )
                    )
                    .values(last_seen_at=now)
                    .returning(
                        sessions.c.id_hash,
                        sessions.c.identity,
                        sessions.c.csrf,
                        sessions.c.created_at,
                    )
                )
            ).first()
        if row is None:
            return None
        return Session(
            id_hash=row.id_hash,
            principal=Principal.model_validate(row.identity),
            csrf=row.csrf,
            created=row.created_at,
            last_seen=now,
        )

    async def end(self, session_id: str | None) -> None:
        """Sign out: forget the session."""
        if session_id:
            async with self.database.write() as connection:
                await connection.execute(
                    delete(sessions).where(sessions.c.id_hash == hash_id(session_id))
                )

    async def count(self, principal: str) -> int:
        """Return how many sessions a principal holds (for tests and operators)."""
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(sessions.c.id_hash).where(sessions.c.principal == principal)
            )
            return len(rows.all())


def same(expected: str, offered: str | None) -> bool:
    """Compare a CSRF value in constant time; a missing one never matches."""
    return bool(offered) and hmac.compare_digest(expected.encode(), (offered or "").encode())
