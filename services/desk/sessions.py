"""Console sign-in: who the person is, and their session in PostgreSQL.

People sign in with OpenID Connect (services.desk.identity); in development a token of
the token file may also be typed in (`TokenIdentity`). Either gives a `SignedIn`: a
`Principal` whose `name` is the actor of everything done in the session (a person's
subject identifier, or the token's name) and whose `display_name` is what they are
called. Nothing else in the console knows how someone signed in. A pending OpenID
Connect sign-in (its state, nonce and PKCE verifier) is kept in `sign_in_attempts`
until it comes back, so the pod that completes it need not be the one that began it.

Sessions live in the database, so any desk pod serves any request and a restart signs
nobody out. The cookie holds a random id; the table holds only its SHA-256, so a copy of
the table opens no session. A session ends when unused for the idle limit, at its
maximum age (a shift), at sign-out, or when its principal opens more than the cap allows
(the oldest goes first): one token signing in ten thousand times evicts only its own
sessions. Each session has its own CSRF token, checked on every form POST.

A page that polls (the work queue's refresh) reads its session without touching it, so
an open tab does not keep a session alive; and a session remembers the last list of
alerts it audited, so a polled list is recorded once per distinct filters and result,
and again only every `RELIST_AFTER` while it stays the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from services.common.auth import Authenticator, Principal
from services.common.clock import Clock
from services.desk.database import Database
from services.desk.metrics import DeskMetrics
from services.desk.schema import sessions, sign_in_attempts

SESSION_COOKIE = "safeguard_session"
PRE_SESSION_COOKIE = "safeguard_signin"
#: Binds a pending OpenID Connect sign-in to the browser that began it (SameSite=Lax: it
#: must come back with the provider's redirect, a cross-site navigation).
ATTEMPT_COOKIE = "safeguard_oidc"
#: A list audited for a session is audited again after this long even when unchanged.
RELIST_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class SignedIn:
    """A person the identity provider vouched for."""

    principal: Principal


class TokenIdentity:
    """Sign-in with a bearer token of the token file: checked once, then a session."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

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

    async def find(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """Return the live session a cookie names; None if absent or expired.

        `touch` (a page a person opened) restarts its idle time; a poll does not.
        """
        if not session_id:
            return None
        now = self.clock.now()
        live = and_(
            sessions.c.id_hash == hash_id(session_id),
            sessions.c.last_seen_at > now - self.lifetimes.idle,
            sessions.c.created_at > now - self.lifetimes.max_age,
        )
        columns = (
            sessions.c.id_hash,
            sessions.c.identity,
            sessions.c.csrf,
            sessions.c.created_at,
            sessions.c.last_seen_at,
        )
        async with self.database.write() as connection:
            if touch:
                statement = (
                    update(sessions).where(live).values(last_seen_at=now).returning(*columns)
                )
                row = (await connection.execute(statement)).first()
            else:
                row = (await connection.execute(select(*columns).where(live))).first()
        if row is None:
            return None
        return Session(
            id_hash=row.id_hash,
            principal=Principal.model_validate(row.identity),
            csrf=row.csrf,
            created=row.created_at,
            last_seen=now if touch else row.last_seen_at,
        )

    async def listing_due(self, session: Session, fingerprint: str) -> bool:
        """Tell whether a list with this fingerprint is to be audited for the session."""
        now = self.clock.now()
        async with self.database.read() as connection:
            row = (
                await connection.execute(
                    select(sessions.c.listed_hash, sessions.c.listed_at).where(
                        sessions.c.id_hash == session.id_hash
                    )
                )
            ).first()
        return (
            row is None
            or row.listed_hash != fingerprint
            or row.listed_at is None
            or row.listed_at <= now - RELIST_AFTER
        )

    async def listed(self, session: Session, fingerprint: str) -> None:
        """Remember that this list was audited for the session (after its record was taken)."""
        async with self.database.write() as connection:
            await connection.execute(
                update(sessions)
                .where(sessions.c.id_hash == session.id_hash)
                .values(listed_hash=fingerprint, listed_at=self.clock.now())
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


@dataclass(frozen=True)
class Attempt:
    """A pending OpenID Connect sign-in, as stored until the provider sends the person back."""

    nonce: str
    verifier: str


class AttemptStore:
    """Pending sign-ins in PostgreSQL: each used once, bound to its browser, short-lived."""

    def __init__(self, database: Database, clock: Clock, lifetime: timedelta) -> None:
        self.database = database
        self.clock = clock
        self.lifetime = lifetime

    async def keep(self, *, state: str, binding: str, nonce: str, verifier: str) -> None:
        """Store a sign-in under its state (hashed), bound to the browser's cookie (hashed)."""
        now = self.clock.now()
        async with self.database.write() as connection:
            await connection.execute(
                insert(sign_in_attempts).values(
                    state_hash=hash_id(state),
                    binding_hash=hash_id(binding),
                    nonce=nonce,
                    code_verifier=verifier,
                    created_at=now,
                )
            )
            await connection.execute(
                delete(sign_in_attempts).where(sign_in_attempts.c.created_at <= now - self.lifetime)
            )

    async def take(self, *, state: str, binding: str | None) -> Attempt | None:
        """Remove and return the sign-in `state` names, if it is live and this browser's.

        Taken even when the binding does not match: a state shown to another browser is
        spent, so it cannot be tried again.
        """
        now = self.clock.now()
        async with self.database.write() as connection:
            row = (
                await connection.execute(
                    delete(sign_in_attempts)
                    .where(sign_in_attempts.c.state_hash == hash_id(state))
                    .returning(
                        sign_in_attempts.c.binding_hash,
                        sign_in_attempts.c.nonce,
                        sign_in_attempts.c.code_verifier,
                        sign_in_attempts.c.created_at,
                    )
                )
            ).first()
        if row is None or row.created_at <= now - self.lifetime:
            return None
        if not binding or not hmac.compare_digest(row.binding_hash, hash_id(binding)):
            return None
        return Attempt(nonce=row.nonce, verifier=row.code_verifier)


def same(expected: str, offered: str | None) -> bool:
    """Compare a CSRF value in constant time; a missing one never matches."""
    return bool(offered) and hmac.compare_digest(expected.encode(), (offered or "").encode())
