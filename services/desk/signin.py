"""Signing in to the console and out of it: OpenID Connect, and a token in development.

`GET /console/sign-in` offers the organisation's sign-in (OpenID Connect, when
`DESK_OIDC__*` is set) and, in development only, a token typed in. Both forms are
guarded by a double-submit value (login CSRF).

OpenID Connect: `POST /console/sign-in/oidc` stores a pending sign-in (state, nonce,
PKCE verifier; services.desk.sessions.AttemptStore), binds it to this browser with a
short-lived `SameSite=Lax` cookie (it must come back on the provider's cross-site
redirect) and sends the person to the provider. `GET /console/sign-in/callback` takes
the pending sign-in named by `state` (once: a replayed callback finds nothing), checks
the browser is the one that began it, exchanges the code and verifies the ID token
(services.desk.identity), and only then opens a session. The callback answers with a
short page that moves on to the queue by itself: the session cookie is `SameSite=Strict`
and a browser does not send it on a navigation that began on the provider's site.

Every refusal here (a wrong token, a callback that is not this browser's, an ID token
that does not verify, a person none of whose groups gives access, a throttled attempt)
is counted by the throttle (services.desk.throttle) and, through the errors middleware,
logged and audited as `request.refused` by the account when it is known and by the
client address otherwise. A provider that does not answer is a 503 page; nobody is
signed in without a verified ID token.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from aiohttp import web

from services.common.auth import Role
from services.desk.app import DESK_KEY, Desk
from services.desk.console import (
    HEADERS,
    NEXT_COOKIE,
    base,
    current,
    form_of,
    home,
    kept_target,
    page,
    redirect,
    render,
    secure_cookies,
)
from services.desk.errors import Forbidden, SignInFailed
from services.desk.identity import PEOPLES_ROLES, NoAccess
from services.desk.sessions import (
    ATTEMPT_COOKIE,
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    SignedIn,
    same,
)
from services.desk.throttle import Keys, client_address
from services.desk.web import ACTOR_KEY, ADDRESS_KEY

log = structlog.get_logger(__name__)

SIGN_IN = "/console/sign-in"
CALLBACK = "/console/sign-in/callback"


def add_routes(app: web.Application) -> None:
    """Register the sign-in and sign-out routes."""
    app.router.add_get(SIGN_IN, sign_in_page)
    app.router.add_post(SIGN_IN, sign_in_with_token)
    app.router.add_post("/console/sign-in/oidc", sign_in_with_provider)
    app.router.add_get(CALLBACK, callback)
    app.router.add_post("/console/sign-out", sign_out)


def _cookie(  # noqa: PLR0913 - one argument per attribute that differs
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    samesite: str = "Strict",
    path: str = "/console",
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        secure=secure_cookies(),
        samesite=samesite,
        path=path,
        max_age=max_age,
    )


def _keys(request: web.Request, account: str | None = None) -> Keys:
    desk = request.app[DESK_KEY]
    address = client_address(request, desk.settings.sign_in.forwarded_for_hops)
    request[ADDRESS_KEY] = address
    return Keys(client=address, account=account)


def _headers(desk: Desk) -> dict[str, str]:
    """Return the console's headers, its forms allowed to go on to the identity provider."""
    if desk.oidc is None:
        return HEADERS
    csp = HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {desk.oidc.provider_origin}"
    )
    return {**HEADERS, "Content-Security-Policy": csp}


def _form(request: web.Request, desk: Desk, pre: str | None, **extra: Any) -> str:  # noqa: ANN401
    return render(
        "sign_in.html",
        **base(
            request,
            None,
            pre=pre,
            tokens=desk.tokens is not None,
            provider=desk.settings.oidc.display if desk.settings.oidc else None,
            **extra,
        ),
    )


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    """Show the ways to sign in (with a double-submit value against login CSRF)."""
    if await current(request) is not None:
        return redirect(kept_target(request) or "/console")
    desk = request.app[DESK_KEY]
    pre = request.cookies.get(PRE_SESSION_COOKIE) or secrets.token_urlsafe(32)
    response = web.Response(
        text=_form(request, desk, pre), content_type="text/html", headers=_headers(desk)
    )
    _cookie(response, PRE_SESSION_COOKIE, pre)
    return response


async def _failed(request: web.Request, keys: Keys) -> None:
    """Count a failed sign-in; the refusal itself is audited by the errors middleware."""
    desk = request.app[DESK_KEY]
    if keys.account is not None:
        request[ACTOR_KEY] = keys.account
    await desk.throttle.failed(keys)


async def _signed_in(request: web.Request, who: SignedIn, *, cross_site: bool) -> web.Response:
    """Open a session for someone verified; send them on to the console.

    After the provider's redirect (`cross_site`) the answer is a page that moves on by
    itself: a browser withholds the new SameSite=Strict cookie from a redirect chain that
    began on another site. After the token form (this site's) a 303 does.
    """
    desk = request.app[DESK_KEY]
    principal = who.principal
    session_id, _session = await desk.sessions.start(who)
    request[ACTOR_KEY] = principal.name
    log.info("console_signed_in", principal=principal.name, kind=principal.kind)
    # After the provider's redirect the kept page's cookie (SameSite=Strict) is withheld:
    # the person's first page then.
    kept = kept_target(request) if principal.has(Role.READ) else None
    where = kept or home(principal)
    if cross_site:
        response = page(render("signed_in.html", **base(request, None, where=where)))
    else:
        response = redirect(where)
    _cookie(response, SESSION_COOKIE, session_id)
    response.del_cookie(PRE_SESSION_COOKIE, path="/console")
    response.del_cookie(NEXT_COOKIE, path="/console")
    response.del_cookie(ATTEMPT_COOKIE, path=CALLBACK)
    return response


async def sign_in_with_token(request: web.Request) -> web.Response:
    """Exchange a token of the token file for a session (development only)."""
    desk = request.app[DESK_KEY]
    form = await form_of(request)
    if not same(request.cookies.get(PRE_SESSION_COOKIE, ""), form.get("csrf")):
        raise Forbidden("The form was not this console's.")
    if desk.tokens is None:
        raise Forbidden("Sign-in with a token is not offered here.")
    keys = _keys(request)
    await desk.throttle.started(keys)
    who = desk.tokens.complete(form)
    if who is None:
        await _failed(request, keys)
        raise SignInFailed("That token is not valid.")
    if not who.principal.roles & PEOPLES_ROLES:
        await _failed(request, Keys(client=keys.client, account=who.principal.name))
        raise Forbidden("This token may not read alerts, the audit trail or assurance packs.")
    return await _signed_in(request, who, cross_site=False)


async def sign_in_with_provider(request: web.Request) -> web.Response:
    """Begin an OpenID Connect sign-in: store it, bind it to the browser, go to the provider."""
    desk = request.app[DESK_KEY]
    form = await form_of(request)
    if not same(request.cookies.get(PRE_SESSION_COOKIE, ""), form.get("csrf")):
        raise Forbidden("The form was not this console's.")
    if desk.oidc is None:
        raise Forbidden("Sign-in with an organisation account is not set up here.")
    await desk.throttle.started(_keys(request))
    begun = await desk.oidc.begin()
    binding = secrets.token_urlsafe(32)
    await desk.attempts.keep(
        state=begun.state, binding=binding, nonce=begun.nonce, verifier=begun.verifier
    )
    response = web.Response(status=303, headers={**_headers(desk), "Location": begun.url})
    _cookie(
        response,
        ATTEMPT_COOKIE,
        binding,
        samesite="Lax",
        path=CALLBACK,
        max_age=int(desk.attempts.lifetime.total_seconds()),
    )
    return response


async def callback(request: web.Request) -> web.Response:
    """Complete an OpenID Connect sign-in: only a verified ID token opens a session."""
    desk = request.app[DESK_KEY]
    if desk.oidc is None:
        raise Forbidden("Sign-in with an organisation account is not set up here.")
    keys = _keys(request)
    await desk.throttle.check(keys)
    state = request.query.get("state", "")
    attempt = None
    if state:
        attempt = await desk.attempts.take(state=state, binding=request.cookies.get(ATTEMPT_COOKIE))
    if attempt is None:
        await _failed(request, keys)
        raise SignInFailed(
            "This sign-in was not started here, has expired or was already used: "
            "please sign in again."
        )
    issuer = request.query.get("iss")
    if issuer is not None and issuer != desk.oidc.settings.issuer:
        # RFC 9207: the answer came from another provider than the one asked (mix-up).
        await _failed(request, keys)
        raise SignInFailed("The answer did not come from this desk's identity provider.")
    if "error" in request.query or not request.query.get("code"):
        # The provider refused or the person cancelled; its own words are not repeated.
        await _failed(request, keys)
        raise SignInFailed("The identity provider did not sign you in.")
    try:
        person = await desk.oidc.complete(
            request.query["code"], verifier=attempt.verifier, nonce=attempt.nonce
        )
    except NoAccess as refusal:
        request[ACTOR_KEY] = refusal.account
        account = Keys(client=keys.client, account=refusal.account)
        await desk.throttle.check(account)
        await _failed(request, account)
        raise
    except SignInFailed:
        await _failed(request, keys)
        raise
    await desk.throttle.check(Keys(client=keys.client, account=person.principal.name))
    return await _signed_in(request, SignedIn(person.principal), cross_site=True)


async def sign_out(request: web.Request) -> web.Response:
    """End the session."""
    session = await current(request)
    if session is None:
        return redirect(SIGN_IN)
    form = await form_of(request)
    if not same(session.csrf, form.get("csrf")):
        raise Forbidden("The form was not this session's.")
    await request.app[DESK_KEY].sessions.end(request.cookies.get(SESSION_COOKIE))
    log.info("console_signed_out", principal=session.principal.name)
    response = redirect(SIGN_IN)
    response.del_cookie(SESSION_COOKIE, path="/console")
    return response
