"""People sign in with OpenID Connect: the authorization code flow with PKCE.

The desk is a confidential client of the force's identity provider (Entra ID, Keycloak,
any certified OpenID Provider). `begin` makes a sign-in: a `state` (returned by the
provider, and the key the pending sign-in is stored under), a `nonce` (bound into the
ID token) and a PKCE verifier (RFC 7636, S256), and the provider's authorization URL.
`complete` takes the code the provider returned, exchanges it with the verifier and the
client secret at the token endpoint, and verifies the ID token before anything else:
its signature with the provider's published keys (asymmetric algorithms only), issuer,
audience, authorized party, expiry, issue time and nonce. Nobody is signed in on less:
no session is ever opened without a verified ID token.

Who the person is comes from the verified token only: `sub` (the actor of everything
they do), what they are called (`name`, as configured), and their groups, mapped to
roles and areas by the desk's settings (`DESK_OIDC__GROUP_ROLES`, `..._GROUP_AREAS`).
Unmapped groups give nothing: a person with no mapped role, or with roles but no area,
is refused.

Every call to the provider is bounded (`timeout_seconds`); one that does not answer, or
answers with something unusable (not JSON, no ID token, keys that do not verify it) is
`IdentityUnavailable` (503) or `SignInFailed` (401), never a session. The discovery
document and keys are kept for `metadata_seconds`; keys are fetched again once when a
token names a key id not among them (the provider rotated its keys).

Authlib supplies the protocol pieces (the authorization URL, the PKCE challenge, the ID
token's claim rules); joserfc, Authlib's JOSE library, checks signatures. The HTTP calls
are made with httpx directly: Authlib's httpx integration is deprecated in the pinned
release.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from services.common.auth import Principal, Role
from services.common.clock import Clock
from services.desk.errors import IdentityUnavailable, SignInFailed
from services.desk.settings import EVERY_AREA, OidcSettings

log = structlog.get_logger(__name__)

#: Asymmetric signatures only: `none` and HMAC (keyed with the client secret) never sign in.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_ACTOR = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SHOWN_MAX = 128
# A person signs in for one of these: the alerts, the audit trail, the assurance pack.
PEOPLES_ROLES = frozenset({Role.READ, Role.AUDIT, Role.LEAD})


@dataclass(frozen=True)
class Begun:
    """A sign-in sent to the provider: what to keep until it comes back, and where to go."""

    state: str
    nonce: str
    verifier: str
    url: str


@dataclass(frozen=True)
class Person:
    """Who a verified ID token names, and what their groups give them."""

    principal: Principal
    subject: str


@dataclass(frozen=True)
class _Metadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    fetched: float


class NoAccess(SignInFailed):
    """The provider vouched for the person, but none of their groups gives them access."""

    status = 403
    code = "no_access"
    title = "No access"

    def __init__(self, message: str, *, account: str) -> None:
        super().__init__(message)
        self.account = account


def person_name(subject: str) -> str:
    """Return the actor name of a person: their `sub`, or a digest of a `sub` no actor can be.

    Entra ID's and Keycloak's subjects (base64url, UUIDs) are used as they are; a subject
    with other characters (`auth0|123`) is named by its SHA-256, so it can still be
    searched for in the audit trail.
    """
    if _ACTOR.fullmatch(subject):
        return subject
    return "sub-" + hashlib.sha256(subject.encode()).hexdigest()[:40]


def shown_name(value: object, fallback: str) -> str:
    """Return what to call someone: the claim's text, without control characters, bounded."""
    if not isinstance(value, str):
        return fallback
    cleaned = "".join(c for c in value if unicodedata.category(c)[0] != "C").strip()
    return cleaned[:_SHOWN_MAX] or fallback


class OidcIdentity:
    """The desk's OpenID Connect client, built from `DESK_OIDC__*`."""

    def __init__(
        self, settings: OidcSettings, clock: Clock, client: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._client = client or httpx.AsyncClient(
            timeout=settings.timeout_seconds, follow_redirects=False
        )
        self._metadata: _Metadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def provider_origin(self) -> str:
        """Return the origin the sign-in form is sent on to (for the page's CSP)."""
        parts = urlsplit(self.settings.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def begin(self) -> Begun:
        """Return a new sign-in: its secrets and the provider's authorization URL."""
        metadata = await self._discover()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
        url = prepare_grant_uri(
            metadata.authorization_endpoint,
            self.settings.client_id,
            "code",
            self.settings.redirect_url,
            self.settings.scopes,
            state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return Begun(state=state, nonce=nonce, verifier=verifier, url=str(url))

    async def complete(self, code: str, *, verifier: str, nonce: str) -> Person:
        """Exchange the code, verify the ID token, and return the person it names."""
        metadata = await self._discover()
        answer = await self._call(
            "POST",
            metadata.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.redirect_url,
                "code_verifier": verifier,
            },
            auth=(self.settings.client_id, self.settings.client_secret.get_secret_value()),
        )
        if answer.status_code in {400, 401}:
            # invalid_grant and friends: a code replayed, expired, or not this client's.
            raise SignInFailed("The sign-in could not be completed: please sign in again.")
        body = _json_object(answer, "token endpoint")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed("The identity provider returned no ID token: nobody signed in.")
        claims = await self._verified(id_token, nonce=nonce, access_token=body.get("access_token"))
        return self.person(claims)

    def person(self, claims: dict[str, Any]) -> Person:
        """Return the person verified claims name, with the roles and areas their groups give."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise SignInFailed("The ID token names nobody.")
        name = person_name(subject)
        groups = claims.get(self.settings.groups_claim)
        held = {g for g in groups if isinstance(g, str)} if isinstance(groups, list) else set()
        roles = frozenset(
            role for group in held for role in self.settings.group_roles.get(group, [])
        )
        granted = {area for group in held for area in self.settings.group_areas.get(group, [])}
        areas = None if EVERY_AREA in granted else frozenset(granted)
        if not roles & PEOPLES_ROLES:
            raise NoAccess(
                "Your account is not in any group that gives access to Safeguard.", account=name
            )
        if areas == frozenset() and roles != {Role.AUDIT}:
            raise NoAccess(
                "Your account's groups give no area: there is nothing you could see.",
                account=name,
            )
        principal = Principal(
            name=name,
            sources=(),
            roles=roles - {Role.SEND},  # people never send events
            areas=areas,
            kind="person",
            display_name=shown_name(claims.get(self.settings.name_claim), name),
        )
        return Person(principal=principal, subject=subject)

    async def _verified(self, id_token: str, *, nonce: str, access_token: object) -> dict[str, Any]:
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=list(ALGORITHMS))
            except InvalidKeyIdError:
                # A key id not among the kept keys: the provider rotated them. Once more.
                keys = await self._key_set(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError) as error:
            log.warning("id_token_refused", reason=type(error).__name__)
            raise SignInFailed("The ID token could not be verified: nobody signed in.") from None
        rules = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": self.settings.issuer},
                "aud": {"essential": True, "value": self.settings.client_id},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            params={
                "nonce": nonce,
                "client_id": self.settings.client_id,
                "access_token": access_token if isinstance(access_token, str) else None,
            },
        )
        try:
            rules.validate(
                now=int(self.clock.now().timestamp()), leeway=self.settings.leeway_seconds
            )
        except JoseError as error:
            log.warning("id_token_refused", reason=type(error).__name__)
            raise SignInFailed("The ID token is not valid for this sign-in.") from None
        return dict(token.claims)

    async def _discover(self) -> _Metadata:
        async with self._lock:
            fresh = self._metadata and (
                time.monotonic() - self._metadata.fetched < self.settings.metadata_seconds
            )
            if fresh and self._metadata is not None:
                return self._metadata
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            body = _json_object(await self._call("GET", url), "discovery")
            if body.get("issuer") != self.settings.issuer:
                # OpenID Connect Discovery 1.0 section 4.3: the issuer must be the same.
                raise IdentityUnavailable(
                    "The identity provider's discovery document names another issuer."
                )
            endpoints = [
                body.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            ]
            if not all(isinstance(e, str) and e for e in endpoints):
                raise IdentityUnavailable(
                    "The identity provider's discovery document is incomplete."
                )
            authorization, token, keys = (str(e) for e in endpoints)
            self._metadata = _Metadata(authorization, token, keys, time.monotonic())
            return self._metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        metadata = await self._discover()
        async with self._lock:
            age = time.monotonic() - self._keys_fetched
            if self._keys is not None and not refresh and age < self.settings.metadata_seconds:
                return self._keys
            if self._keys is not None and refresh and age < 60:  # noqa: PLR2004 - once a minute
                return self._keys
            body = _json_object(await self._call("GET", metadata.jwks_uri), "keys")
            try:
                self._keys = KeySet.import_key_set(body)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise IdentityUnavailable(
                    "The identity provider's keys could not be read."
                ) from None
            self._keys_fetched = time.monotonic()
            return self._keys

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        try:
            answer = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            # The type only: messages can quote URLs with codes in them.
            log.warning("identity_provider_unreachable", error=type(error).__name__)
            raise IdentityUnavailable(
                "The identity provider did not answer: try again in a moment."
            ) from None
        if answer.status_code >= 500:  # noqa: PLR2004
            log.warning("identity_provider_failed", status=answer.status_code)
            raise IdentityUnavailable("The identity provider failed: try again in a moment.")
        return answer


def _json_object(answer: httpx.Response, what: str) -> dict[str, Any]:
    if answer.status_code != 200:  # noqa: PLR2004
        log.warning("identity_provider_refused", what=what, status=answer.status_code)
        raise IdentityUnavailable(f"The identity provider's {what} answered {answer.status_code}.")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise IdentityUnavailable(f"The identity provider's {what} did not answer JSON.")
    return body
