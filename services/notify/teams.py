"""Microsoft Teams: an Adaptive Card posted to a Workflows webhook.

A Teams Workflows flow ("When a Teams webhook request is received", then "Post card in
a chat or channel") takes a message with one Adaptive Card attachment. Its trigger URL
carries a shared-access signature (`sig=`) that is the whole credential: whoever holds
the URL can post to the channel. So the URL is a secret (`NOTIFY_TEAMS_URLS__<NAME>`,
named by the receiver's `secret` in the policy), never in the policy file, a log or a
topic; only its scheme and host are ever shown. There is no request signing to do: the
flow checks the signature in the URL.

The card's buttons open the alert in the desk's console (`Action.OpenUrl`), acknowledge
focused; the person signs in there, so nothing in the card can act by itself. Cards are
version 1.4 (Teams renders up to 1.5 on desktop and mobile) and stay well under Teams'
28 KB message limit: a grouped message lists at most `MAX_LISTED` alerts.

Power Automate answers 202 when the flow accepted the message, 429 with `Retry-After`
when throttled, 5xx when down (retried within the step's budget); other 4xx are final
(a deleted flow is 404, a bad signature 401). Posting is not idempotent: a retry after a
timeout may post the card twice, which is the safe side of "late, never lost".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from schemas.notifications import FailureReason, NotificationPurpose
from services.common.clock import Clock
from services.notify.channels import Attempt, HttpClient
from services.notify.content import Content
from services.notify.ledger import PendingDelivery
from services.notify.messages import email_subject, subject_line
from services.notify.wording import span

CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_LISTED = 10
SEVERITY_COLOUR = {"critical": "Attention", "high": "Warning", "medium": "Accent"}


def _text(text: str, **style: Any) -> dict[str, Any]:  # noqa: ANN401 - card properties
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _facts(content: Content, pending: PendingDelivery) -> list[dict[str, str]]:
    alert = content.headline
    facts = [
        ("Subject", subject_line(alert.subject_kind.value, alert.subject_id)),
        ("Rule", alert.rule),
        ("Severity", alert.severity.value),
        ("Level", str(pending.level) + (f" (repeat {pending.round})" if pending.round else "")),
        ("Area", alert.area or "not recorded"),
        ("Raised", content.local(alert.raised_at)),
    ]
    if alert.due_at is not None:
        facts.append(("Due", content.local(alert.due_at)))
        late = content.overdue(alert.due_at)
        if late is not None and pending.purpose is NotificationPurpose.ALERT:
            facts.append(("Overdue for", span(late)))
    step = content.next_step_sentence()
    if step is not None and pending.purpose is NotificationPurpose.ALERT:
        facts.append(("Next", step))
    facts.append(("Alert", alert.alert_id))
    return [{"title": title, "value": value} for title, value in facts]


def adaptive_card(content: Content, pending: PendingDelivery) -> dict[str, Any]:
    """Return the Adaptive Card of a notification."""
    alert = content.headline
    title = email_subject(content, pending).removeprefix("[Safeguard] ")
    body: list[dict[str, Any]] = [
        _text(
            title,
            weight="Bolder",
            size="Medium",
            color=SEVERITY_COLOUR.get(alert.severity.value, "Default"),
        ),
        _text(alert.summary),
        {"type": "FactSet", "facts": _facts(content, pending)},
    ]
    listed = content.listed
    if listed:
        body.append(_text(f"This event raised {len(listed)} alerts, most severe first:"))
        for member in listed[:MAX_LISTED]:
            late = content.overdue(member.due_at)
            line = f"{member.severity} {member.rule}, " + subject_line(
                member.subject_kind, member.subject_id
            )
            line += f", overdue {span(late)}" if late is not None else ""
            item: dict[str, Any] = {"type": "Container", "items": [_text(line)]}
            url = _button_url(content, pending, member.alert_id)
            if url is not None:
                item["selectAction"] = {"type": "Action.OpenUrl", "url": url, "title": "Open"}
            body.append(item)
        if len(listed) > MAX_LISTED:
            body.append(_text(f"and {len(listed) - MAX_LISTED} more, in the console"))
    guidance = content.guidance(alert.rule)
    if guidance is not None and pending.purpose is NotificationPurpose.ALERT:
        body += [
            _text("What to do", weight="Bolder", separator=True),
            _text(guidance.action),
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Call", "value": "; ".join(guidance.call)},
                    {"title": "Basis", "value": guidance.basis},
                ],
            },
        ]
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "fallbackText": f"{title}: {alert.summary}",
        "body": body,
    }
    actions = _actions(content, pending)
    if actions:
        card["actions"] = actions
    return card


def _button_url(content: Content, pending: PendingDelivery, alert_id: str) -> str | None:
    if content.wants_acknowledgement(pending.purpose):
        return content.acknowledge_link(alert_id)
    return content.link(alert_id)


def _actions(content: Content, pending: PendingDelivery) -> list[dict[str, Any]]:
    alert_id = content.headline.alert_id
    page = content.link(alert_id)
    if page is None:
        return []
    actions = []
    if content.wants_acknowledgement(pending.purpose):
        actions.append(
            {
                "type": "Action.OpenUrl",
                "title": "Acknowledge",
                "url": content.acknowledge_link(alert_id),
                "style": "positive",
            }
        )
    actions.append({"type": "Action.OpenUrl", "title": "Open in the console", "url": page})
    return actions


def teams_message(content: Content, pending: PendingDelivery) -> bytes:
    """Return the JSON a Workflows webhook takes: a message with the card attached."""
    message = {
        "type": "message",
        "attachments": [
            {
                "contentType": CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": adaptive_card(content, pending),
            }
        ],
    }
    return json.dumps(message, separators=(",", ":")).encode()


class TeamsChannel:
    """Posts cards to Workflows webhook URLs, each kept as a secret under its name."""

    def __init__(
        self, clock: Clock, urls: Mapping[str, str], *, allow_http: bool | None = None
    ) -> None:
        self._urls = dict(urls)
        self._http = HttpClient(clock, allow_http=allow_http)

    async def attempt(
        self, content: Content, pending: PendingDelivery, *, time_limit: float
    ) -> Attempt:
        """Post the card once."""
        url = self._urls.get(pending.recipient.secret or "")
        if url is None:
            return Attempt(
                ok=False, permanent=True, reason=FailureReason.MISCONFIGURED, detail="no_url"
            )
        return await self._http.post(
            url,
            body=teams_message(content, pending),
            headers={"User-Agent": "safeguard-notify"},
            time_limit=time_limit,
        )

    async def close(self) -> None:
        """Close the client session."""
        await self._http.close()
