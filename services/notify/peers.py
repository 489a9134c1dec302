"""The other notify workers, so that `GET /v1/alerts` lists every alert, not just local ones.

Each worker indexes the alerts of the partitions it owns. The list page asks every other
worker of the group for its page (`local=1`, the caller's own token, so each worker
checks and audits the read itself) and merges the pages by the list's order. The
group's members and their URLs come from Faust's assignor, which every member learns at
each rebalance; each worker advertises `canonical_url` (NOTIFY_CANONICAL_URL: the pod's
address in Kubernetes).

A worker that does not answer in time leaves its partitions out, and the answer says so
(`complete: false` and the partitions it covers) rather than failing the whole read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import faust
import structlog

from services.notify.index import cursor_at

log = structlog.get_logger(__name__)

PEER_TIMEOUT_SECONDS = 5.0


@dataclass
class Merged:
    """The merged page: alerts in order, where to continue, and what it covers."""

    alerts: list[dict[str, Any]]
    next_cursor: str | None
    partitions: set[int]
    unanswered: list[str] = field(default_factory=list)


class Peers:
    """The other members of this worker's group, found through Faust's assignor."""

    def __init__(self, app: faust.App, table: str) -> None:
        self._app = app
        self._table = table

    def urls(self) -> list[str]:
        """Return the other workers' base URLs (empty with one worker)."""
        me = str(self._app.conf.canonical_url).rstrip("/")
        hosts = self._app.router.table_metadata(self._table)
        return sorted(str(h).rstrip("/") for h in hosts if str(h).rstrip("/") != me)

    async def pages(
        self, query: Mapping[str, str], authorization: str
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Ask every other worker for its page; return the answers and who did not answer."""
        urls = self.urls()
        if not urls:
            return [], []
        params = {**query, "local": "1"}
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            answers = await asyncio.gather(
                *(self._page(session, url, params, authorization) for url in urls)
            )
        pages = [a for a in answers if a is not None]
        unanswered = [url for url, a in zip(urls, answers, strict=True) if a is None]
        return pages, unanswered

    @staticmethod
    async def _page(
        session: aiohttp.ClientSession, url: str, params: dict[str, str], authorization: str
    ) -> dict[str, Any] | None:
        try:
            async with session.get(
                f"{url}/v1/alerts", params=params, headers={"Authorization": authorization}
            ) as response:
                if response.status != 200:  # noqa: PLR2004 - only a page can be merged
                    log.warning("peer_list_refused", status=response.status)
                    return None
                page: dict[str, Any] = await response.json()
                return page
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("peer_list_failed", error=type(exc).__name__)
            return None


def merge(
    own: dict[str, Any], others: list[dict[str, Any]], limit: int, unanswered: list[str]
) -> Merged:
    """Merge pages that each hold up to `limit` alerts after the same cursor, in list order."""
    pages = [own, *others]
    alerts = sorted(
        (a for page in pages for a in page["alerts"]),
        key=lambda a: (-datetime.fromisoformat(a["raised_at"]).timestamp(), a["alert_id"]),
    )
    more = len(alerts) > limit or any(page.get("next_cursor") for page in pages)
    kept = alerts[:limit]
    cursor = None
    if more and kept:
        last = kept[-1]
        cursor = cursor_at(datetime.fromisoformat(last["raised_at"]), last["alert_id"])
    partitions = {p for page in pages for p in page.get("partitions", [])}
    return Merged(kept, cursor, partitions, unanswered)
