"""Console sign-in: who the person is (an identity provider), and their server-side session.

The identity step is a seam (`IdentityProvider`): today a bearer token from the token
file is typed in once and exchanged for a session; an OIDC provider (the forces' Entra
ID) replaces it by implementing the same protocol, its `complete` taking the callback's
parameters and returning the same `SignedIn` (a `Principal` built from the ID token's
roles and areas claims, and the access token as the credential the console presents to
risk on the person's behalf). Nothing else in the console knows how someone signed in.

Sessions live in this notify process's memory, never in the cookie: the cookie holds a
random id only. A restart, or a request that reaches another notify pod, means signing
in again (said in docs/contract.md). A session ends when unused for the idle limit, at
its maximum age (a shift), or at sign-out. Each session has its own CSRF token, checked
on every form POST; the sign-in form, before any session exists, is protected by a
double-submit value (a cookie and a hidden field that must match).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from services.common.auth import Authenticator, Principal
from services.common.clock import Clock

SESSION_COOKIE = "safeguard_session"
PRE_SESSION_COOKIE = "safeguard_signin"
#: Sessions held at most; the oldest idle ones go first (memory stays bounded).
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class SignedIn:
    """A person the identity provider vouched for, and what acts on their behalf."""

    principal: Principal
    credential: str
    """Presented to risk as `Authorization: Bearer`; kept in memory, never in a cookie."""


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
        return None if principal is None else SignedIn(principal, token)


@dataclass
class Session:
    """One signed-in person in this process."""

    id: str
    who: SignedIn
    csrf: str
    created: datetime
    last_seen: datetime
    flash: list[str] = field(default_factory=list)

    @property
    def principal(self) -> Principal:
        """Return who this session acts as."""
        return self.who.principal


class Sessions:
    """In-memory sessions with idle and maximum lifetimes, read through an injected clock."""

    def __init__(self, clock: Clock, *, idle: timedelta, max_age: timedelta) -> None:
        self._clock = clock
        self._idle = idle
        self._max_age = max_age
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self, who: SignedIn) -> Session:
        """Open a session for someone who just signed in."""
        now = self._clock.now()
        self._sweep(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.id]
        session = Session(
            id=secrets.token_urlsafe(32),
            who=who,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """Return the live session a cookie names, touching it; None if absent or expired."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock.now()
        if self._expired(session, now):
            del self._sessions[session.id]
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str | None) -> None:
        """Sign out: forget the session."""
        if session_id:
            self._sessions.pop(session_id, None)

    def _expired(self, session: Session, now: datetime) -> bool:
        return now - session.last_seen >= self._idle or now - session.created >= self._max_age

    def _sweep(self, now: datetime) -> None:
        for ident in [i for i, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[ident]


def same(expected: str, offered: str | None) -> bool:
    """Compare a CSRF value in constant time; a missing one never matches."""
    return bool(offered) and hmac.compare_digest(expected.encode(), (offered or "").encode())
