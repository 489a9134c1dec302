"""Sign-in throttling, counted in PostgreSQL so that every desk pod counts together.

Three counters, each in fixed windows of `DESK_SIGN_IN__WINDOW_SECONDS` (10 min):

- sign-ins *started* from one client address (`attempts_per_client`, 30): each start
  stores a pending sign-in, so this also bounds what one address can make the desk keep;
- sign-ins that *failed* from one client address (`failures_per_client`, 10): a token
  typed wrong, a callback with a state that is not this browser's, an ID token that does
  not verify, a person with no access;
- sign-ins that failed for one *account* (`failures_per_account`, 5): a person the
  provider vouched for whom the desk refuses, or a token's name.

Over a limit the answer is 429 with `Retry-After` (the seconds left in the window),
before anything else is done. Keys are hashed: the table holds no address or subject.
The client address is the connection's, or the one `forwarded_for_hops` proxies in
front of the desk (the ingress) appended to `X-Forwarded-For`: with 1, the last entry.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.common.clock import Clock
from services.desk.database import Database
from services.desk.errors import TooManyAttempts
from services.desk.schema import sign_in_counts
from services.desk.settings import SignInSettings


def client_address(request: web.Request, hops: int) -> str:
    """Return the caller's address: the connection's, or the one the trusted proxies saw."""
    if hops > 0:
        forwarded = [
            part.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for part in header.split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return request.remote or "unknown"


@dataclass(frozen=True)
class Keys:
    """The counters one sign-in step touches."""

    client: str
    account: str | None = None


def _key(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(value.encode(errors="replace")).hexdigest()[:32]


class Throttle:
    """Counts sign-in attempts and failures; refuses (429) past the limits."""

    def __init__(self, database: Database, clock: Clock, settings: SignInSettings) -> None:
        self.database = database
        self.clock = clock
        self.settings = settings
        self.window = timedelta(seconds=settings.window_seconds)

    def _window(self) -> tuple[datetime, int]:
        now = self.clock.now()
        seconds = self.settings.window_seconds
        start = math.floor(now.timestamp() / seconds) * seconds
        left = math.ceil(start + seconds - now.timestamp())
        return datetime.fromtimestamp(start, UTC), left

    async def _counts(self, keys: list[str]) -> dict[str, int]:
        start, _ = self._window()
        async with self.database.read() as connection:
            rows = await connection.execute(
                select(sign_in_counts.c.key, sign_in_counts.c.count).where(
                    sign_in_counts.c.key.in_(keys), sign_in_counts.c.window_start == start
                )
            )
            return {str(row[0]): int(row[1]) for row in rows}

    async def _add(self, keys: list[str]) -> None:
        start, _ = self._window()
        async with self.database.write() as connection:
            for key in keys:
                statement = insert(sign_in_counts).values(key=key, window_start=start, count=1)
                await connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=[sign_in_counts.c.key, sign_in_counts.c.window_start],
                        set_={"count": sign_in_counts.c.count + 1},
                    )
                )
            await connection.execute(
                delete(sign_in_counts).where(sign_in_counts.c.window_start < start - self.window)
            )

    async def check(self, keys: Keys) -> None:
        """Refuse (429) when the client or the account has failed too often this window."""
        limits = {_key("fail-client", keys.client): self.settings.failures_per_client}
        if keys.account is not None:
            limits[_key("fail-account", keys.account)] = self.settings.failures_per_account
        counts = await self._counts(list(limits))
        if any(counts.get(key, 0) >= limit for key, limit in limits.items()):
            _, left = self._window()
            raise TooManyAttempts(
                f"Too many failed sign-ins: try again in {left} s.", retry_after=left
            )

    async def started(self, keys: Keys) -> None:
        """Count a sign-in started from the client; refuse (429) past the limit."""
        await self.check(keys)
        key = _key("start-client", keys.client)
        if (await self._counts([key])).get(key, 0) >= self.settings.attempts_per_client:
            _, left = self._window()
            raise TooManyAttempts(
                f"Too many sign-ins from this address: try again in {left} s.",
                retry_after=left,
            )
        await self._add([key])

    async def failed(self, keys: Keys) -> None:
        """Count a failed sign-in against the client and, when known, the account."""
        counted = [_key("fail-client", keys.client)]
        if keys.account is not None:
            counted.append(_key("fail-account", keys.account))
        await self._add(counted)
