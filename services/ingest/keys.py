"""The Kafka key of an event: its subject, so one child's events stay in order on one partition."""

from __future__ import annotations

from schemas.events import Event


def partition_key(event: Event) -> str:
    """Return the id that orders this event: child, offender, enquiry or incident."""
    data = event.data
    for attribute in ("child_id", "offender_id", "enquiry_id"):
        value = getattr(data, attribute, None)
        if isinstance(value, str):
            return value
    children = getattr(data, "children", None)
    if children:
        # An incident with several children is re-keyed per child by the risk service;
        # its first child keeps it beside that child's other events.
        return str(children[0].child_id)
    return f"{event.source}|{event.id}"
