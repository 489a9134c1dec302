"""The signed webhook's JSON body and the email, rendered from a notification's `Content`.

Both carry the subject id (a pseudonymous reference the sending systems use, never a
name), local times in the deployment's zone beside the UTC ones, how long the alert has
been overdue, what happens next and when, the policy's guidance for the rule, and the
link that opens the alert in the desk's console with acknowledge focused. Free text a
sender wrote never reaches a message: the summary is the risk service's own sentence.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from schemas.alerts import Severity
from schemas.notifications import NotificationPurpose
from services.notify.content import Content, NextStep, iso, member_step
from services.notify.guidance import Guidance
from services.notify.ledger import GroupMember, PendingDelivery
from services.notify.wording import countdown, span

NO_AREA = "not recorded"


def subject_line(kind: str, subject_id: str) -> str:
    """Return who an alert is about as a message shows it: `child C-123`."""
    return f"{kind} {subject_id}"


def _timing(content: Content, due_at: datetime | None, raised_at: datetime) -> dict[str, Any]:
    """Return an alert's times for a webhook: local beside UTC, and how long overdue."""
    timing: dict[str, Any] = {"raised_at_local": content.local(raised_at)}
    if due_at is not None:
        timing["due_at_local"] = content.local(due_at)
        late = content.overdue(due_at)
        if late is not None:
            timing["overdue_seconds"] = int(late.total_seconds())
            timing["overdue_for"] = span(late)
    return timing


def webhook_body(content: Content, pending: PendingDelivery) -> bytes:
    """Return the exact JSON bytes POSTed (and signed)."""
    headline = content.headline
    body: dict[str, Any] = {
        "notification_id": pending.notification_id,
        "purpose": pending.purpose.value,
        "level": pending.level,
        "round": pending.round,
        "alert": headline.model_dump(mode="json", exclude_none=True),
        "subject": {"kind": headline.subject_kind.value, "id": headline.subject_id},
        "timezone": content.presentation.zone.key,
        "as_of": iso(content.now),
        "as_of_local": content.local(content.now),
        **_timing(content, headline.due_at, headline.raised_at),
    }
    link = content.link(headline.alert_id)
    if link is not None:
        body["console_url"] = link
        if content.wants_acknowledgement(pending.purpose):
            body["acknowledge_url"] = content.acknowledge_link(headline.alert_id)
    guidance = content.guidance(headline.rule)
    if guidance is not None:
        body["guidance"] = guidance.as_json()
    step = content.headline_step
    if step is not None and pending.purpose is NotificationPurpose.ALERT:
        body["next_step"] = _step_json(content, step)
    if content.reopened:
        body["reopened"] = True
    if content.resolved_breach:
        body["resolved_breach"] = True
    if content.members:
        body["alerts"] = [_listed(content, m, pending) for m in content.listed]
    if pending.purpose is NotificationPurpose.RESOLUTION:
        body["resolution"] = content.resolution
    if pending.purpose is NotificationPurpose.ACKNOWLEDGEMENT:
        body["acknowledgement"] = content.acknowledgement
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _step_json(content: Content, step: NextStep) -> dict[str, Any]:
    return {
        "at": iso(step.at),
        "at_local": content.local(step.at),
        "in_seconds": max(0, int((step.at - content.now).total_seconds())),
        "kind": step.kind,
        "level": step.level,
        "route": step.route,
        "recipients": list(step.recipients),
        "text": content.next_step_sentence(step),
    }


def _listed(content: Content, member: GroupMember, pending: PendingDelivery) -> dict[str, Any]:
    item: dict[str, Any] = {
        **member.model_dump(mode="json", exclude_none=True, exclude={"next_step"}),
        "console_url": content.link(member.alert_id),
    }
    step = content.next_step if member.alert_id == content.alert.alert_id else member_step(member)
    if step is not None and pending.purpose is NotificationPurpose.ALERT:
        item["next_step"] = _step_json(content, step)
    if member.due_at is not None:
        item["due_at_local"] = content.local(member.due_at)
        late = content.overdue(member.due_at)
        if late is not None:
            item["overdue_seconds"] = int(late.total_seconds())
            item["overdue_for"] = span(late)
    if content.wants_acknowledgement(pending.purpose):
        item["acknowledge_url"] = content.acknowledge_link(member.alert_id)
    guidance = content.guidance(member.rule)
    if guidance is not None:
        item["guidance"] = guidance.as_json()
    return item


# -- email -------------------------------------------------------------------------------


def email_subject(content: Content, pending: PendingDelivery) -> str:
    """Return the subject line: what happened, how severe, which rule, about whom."""
    alert = content.headline
    resolved = pending.purpose is NotificationPurpose.RESOLUTION
    head = "Resolved" if resolved else f"Level {pending.level}"
    if resolved and content.resolved_breach:
        head = "Resolved breach"
    elif content.reopened:
        head = f"Re-opened, level {pending.level}"
    if content.members:
        worst = max(Severity(m.severity) for m in content.members).value
        return f"[Safeguard] {head}: {len(content.members)} alerts from one event, highest {worst}"
    late = content.overdue(alert.due_at)
    overdue = f", overdue {span(late)}" if late is not None and not resolved else ""
    return f"[Safeguard] {head}: {alert.severity.value} {alert.rule}{overdue}"


def _rows(content: Content, pending: PendingDelivery) -> list[tuple[str, str]]:
    alert = content.headline
    resolved = pending.purpose is NotificationPurpose.RESOLUTION
    level = str(pending.level) + (f" (repeat {pending.round})" if pending.round else "")
    rows = [
        ("Subject", subject_line(alert.subject_kind.value, alert.subject_id)),
        ("Rule", alert.rule),
        ("Severity", alert.severity.value),
        ("Level", level),
        ("Area", alert.area or NO_AREA),
        ("Raised", content.local(alert.raised_at)),
    ]
    if alert.due_at is not None:
        rows.append(("Due", content.local(alert.due_at)))
        late = content.overdue(alert.due_at)
        if late is not None and not resolved:
            rows.append(("Overdue for", f"{span(late)} (at {content.local(content.now)})"))
    else:
        rows.append(("Due", "no deadline: a pattern of events"))
    if resolved and content.resolution is not None:
        rows.append(("Resolved", _resolved_text(content)))
    step = content.next_step_sentence()
    if step is not None and pending.purpose is NotificationPurpose.ALERT:
        rows.append(("Next", step))
    elif pending.purpose is NotificationPurpose.ALERT:
        rows.append(("Next", "Nobody further: this is the top of the ladder."))
    rows.append(("Alert", alert.alert_id))
    link = (
        content.acknowledge_link(alert.alert_id)
        if content.wants_acknowledgement(pending.purpose)
        else content.link(alert.alert_id)
    )
    if link is not None:
        rows.append(("Acknowledge" if not resolved else "Open", link))
    return rows


def _resolved_text(content: Content) -> str:
    resolution = content.resolution or {}
    when = content.local(datetime.fromisoformat(str(resolution.get("resolved_at"))))
    if resolution.get("how") == "fulfilled":
        late = int(resolution.get("late_by_seconds") or 0)
        lateness = f", {span(timedelta(seconds=late))} late" if late > 0 else ", on time"
        return f"{when}: fulfilled{lateness}"
    by = resolution.get("by", "someone")
    reason = resolution.get("reason")
    return f"{when}: closed by {by}" + (f" ({reason.replace('_', ' ')})" if reason else "")


def _guidance_lines(rule: str, guidance: Guidance) -> list[str]:
    return [
        f"What to do ({rule}): {guidance.action}",
        f"Call: {'; '.join(guidance.call)}",
        f"Basis: {guidance.basis}",
    ]


def _guidance_markup(rule: str, guidance: Guidance) -> str:
    return (
        f"<h3>What to do ({html.escape(rule)})</h3><p>{html.escape(guidance.action)}</p>"
        f"<p><b>Call:</b> {html.escape('; '.join(guidance.call))}</p>"
        f"<p><b>Basis:</b> {html.escape(guidance.basis)}</p>"
    )


def _action(content: Content, pending: PendingDelivery) -> str:
    if pending.purpose is NotificationPurpose.ACKNOWLEDGEMENT:
        return "It was acknowledged; no action is needed from this message."
    if pending.purpose is NotificationPurpose.RESOLUTION:
        if content.resolved_breach:
            return "The obligation was met late; this breach is recorded and needs no action."
        return "This alert is resolved; no action is needed."
    if content.reopened:
        return (
            "It was acknowledged but the obligation is still unmet: act, or resolve it "
            "with a reason, at the link above."
        )
    return "Acknowledge it at the link above, or it escalates."


def email_message(content: Content, pending: PendingDelivery, *, sender: str) -> EmailMessage:
    """Return the email: plain text and HTML, the same facts in each.

    The subject id is a pseudonymous reference (a duty manager must know
    whom an alert is about without signing in first); names and free text never appear.
    """
    alert = content.headline
    rows = _rows(content, pending)
    listed = content.listed
    rules = list(dict.fromkeys([alert.rule, *(m.rule for m in listed)]))
    guidance = [(rule, g) for rule in rules if (g := content.guidance(rule)) is not None]
    text_lines = [alert.summary, "", *(f"{name}: {value}" for name, value in rows)]
    if listed:
        text_lines += ["", f"This event raised {len(listed)} alerts, most severe first:"]
        text_lines += [f"- {_member_line(content, m, pending)}" for m in listed]
    for rule, g in guidance:
        text_lines += ["", *_guidance_lines(rule, g)]
    action = _action(content, pending)
    text = "\n".join([*text_lines, "", action])
    cells = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{_cell(value)}</td></tr>"
        for name, value in rows
    )
    items = "".join(f"<li>{_member_markup(content, m, pending)}</li>" for m in listed)
    markup = (
        f"<html><body><p><b>{html.escape(alert.summary)}</b></p>"
        f"<table>{cells}</table>"
        + (
            f"<p>This event raised {len(listed)} alerts, most severe first:</p><ul>{items}</ul>"
            if items
            else ""
        )
        + "".join(_guidance_markup(rule, g) for rule, g in guidance)
        + f"<p>{html.escape(action)}</p></body></html>"
    )
    message = EmailMessage()
    message["Subject"] = email_subject(content, pending)
    message["From"] = sender
    message["To"] = ", ".join(pending.recipient.to)
    # A stable Message-ID per notification lets mail systems drop a re-sent copy.
    message["Message-ID"] = f"<{pending.notification_id.replace(':', '.')}@safeguard>"
    message["X-Safeguard-Notification-Id"] = pending.notification_id
    message.set_content(text)
    message.add_alternative(markup, subtype="html")
    return message


def _member_facts(content: Content, member: GroupMember) -> str:
    facts = [
        f"{member.severity} {member.rule}",
        subject_line(member.subject_kind, member.subject_id),
    ]
    late = content.overdue(member.due_at)
    if late is not None:
        facts.append(f"overdue {span(late)}")
    step = content.next_step if member.alert_id == content.alert.alert_id else member_step(member)
    if step is not None:
        what = f"level {step.level}" if step.kind == "level" else "told again"
        facts.append(f"{what} {countdown(step.at, content.now)}")
    return ", ".join(facts) + f": {member.summary}"


def _member_url(content: Content, member: GroupMember, pending: PendingDelivery) -> str | None:
    if content.wants_acknowledgement(pending.purpose):
        return content.acknowledge_link(member.alert_id)
    return content.link(member.alert_id)


def _member_line(content: Content, member: GroupMember, pending: PendingDelivery) -> str:
    url = _member_url(content, member, pending)
    return f"{_member_facts(content, member)} {url or member.alert_id}"


def _member_markup(content: Content, member: GroupMember, pending: PendingDelivery) -> str:
    url = _member_url(content, member, pending)
    return (
        html.escape(_member_facts(content, member))
        + " "
        + (_anchor(url) if url else html.escape(member.alert_id))
    )


def _anchor(url: str) -> str:
    return f"<a href='{html.escape(url, quote=True)}'>{html.escape(url)}</a>"


def _cell(value: str) -> str:
    return _anchor(value) if value.startswith(("https://", "http://")) else html.escape(value)
