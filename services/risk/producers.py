"""Direct producers: systems that write events onto Kafka themselves, each on its own topic.

A Kafka record does not say which principal wrote it, so a producer's scopes cannot be
checked on the shared events topic. Each direct producer therefore writes a topic of
its own, `safeguarding.events.<name>.v1` (the broker's ACLs let only that producer
write there: deploy/k8s/README.md), and risk reads it with the producer's scopes, the
same model as a token's (`services.common.auth.Principal`): the `sources` it may send
for, the event `types` (absent: every type) and the `areas` (absent: every area; an
event without an area only then, as areas fail closed).

Risk takes the list from `RISK_DIRECT_PRODUCERS_FILE`:

    producers:
      - name: police-rms
        sources: ["urn:police:rms"]
        types: [child.missing, child.found]
        areas: [north]

An event within the scopes is processed as one from ingest, after an `event.accepted`
audit record naming the producer; one outside them is dead-lettered `forbidden` with a
`request.refused` record (status 403, route the producer's topic), and nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.alerts import EventRef
from schemas.audit import AuditAction
from schemas.envelope import AreaCode, EventType
from schemas.errors import FieldError
from schemas.events import Event
from services.common import yaml_text
from services.common.audit import audit_record, refused_request
from services.common.auth import ANY_SOURCE, Principal, Role
from services.common.environment import ENV_VARIABLE
from services.common.stream.inputs import Input, Record

ProducerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")]
FORBIDDEN_STATUS = 403
# schemas.audit.Refusal.route: the producer's topic is the refusal's route.
MAX_ROUTE_CHARS = 128
# Audit record ids derived from the input: an input processed again (a retried batch, a
# restart before its offset was committed) leaves records with the ids it had.
_RECORD_IDS = uuid.UUID("5b1f0a3e-9c8e-4d55-9a51-0d3c8f1e7a42")


class ProducerConfigError(ValueError):
    """The direct producers' file is missing, malformed or unsafe; the message says why."""


class ProducerEntry(BaseModel):
    """One direct producer as configured: its name and scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ProducerName = Field(description="names its topic, principal and audit actor")
    sources: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        description="CloudEvent sources it may send for; '*' is any (development only)"
    )
    types: frozenset[EventType] | None = Field(
        default=None, description="event types it may send; absent means every type"
    )
    areas: frozenset[AreaCode] | None = Field(
        default=None, description="areas it may send events of; absent means every area"
    )


class ProducersFile(BaseModel):
    """The direct producers' file: possibly none."""

    model_config = ConfigDict(extra="forbid")

    producers: list[ProducerEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class DirectProducer:
    """A direct producer: its topic, and its scopes as a principal that may send."""

    name: str
    topic: str
    principal: Principal


def producer_topic(events_topic: str, name: str) -> str:
    """Return a producer's topic: the events topic with `.<name>` before its version.

    `safeguarding.events.v1` -> `safeguarding.events.<name>.v1`, and a prefixed events
    topic keeps its prefix.
    """
    base, dot, version = events_topic.rpartition(".")
    if not dot or not base:
        raise ProducerConfigError(f"events topic {events_topic!r} has no `.<version>` suffix")
    return f"{base}.{name}.{version}"


def producers_from(
    entries: list[ProducerEntry], events_topic: str, *, development: bool
) -> list[DirectProducer]:
    """Return the producers of validated entries; refuse duplicates and unsafe sources.

    A `"*"` source is refused outside development mode, as in a token file.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            problems.append(f"producer {entry.name!r} is listed twice")
        seen.add(entry.name)
        if ANY_SOURCE in entry.sources and not development:
            problems.append(
                f"producer {entry.name!r} may send for any source ('*'), allowed only when "
                f"{ENV_VARIABLE}=development; list its sources explicitly"
            )
    producers = [
        DirectProducer(
            name=entry.name,
            topic=producer_topic(events_topic, entry.name),
            principal=Principal(
                name=entry.name,
                sources=entry.sources,
                roles=frozenset({Role.SEND}),
                types=None if entry.types is None else frozenset(entry.types),
                areas=entry.areas,
            ),
        )
        for entry in entries
    ]
    problems.extend(
        f"producer {p.name!r}: its topic's name is longer than {MAX_ROUTE_CHARS} characters"
        for p in producers
        if len(p.topic) > MAX_ROUTE_CHARS
    )
    if problems:
        raise ProducerConfigError("refusing to start: " + "; ".join(problems))
    return producers


def load_producers(path: Path, events_topic: str, *, development: bool) -> list[DirectProducer]:
    """Load and check the direct producers' file (YAML); raise ProducerConfigError plainly.

    Pydantic's messages are reduced to locations and messages: a file's values are not
    repeated (a mistyped entry could hold anything).
    """
    try:
        raw = yaml_text.load(path.read_text())
    except OSError as exc:
        raise ProducerConfigError(
            f"cannot read direct producers file {path}: {exc.strerror}"
        ) from None
    except yaml.YAMLError:
        raise ProducerConfigError(f"direct producers file {path} is not YAML") from None
    try:
        parsed = ProducersFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ProducerConfigError(f"invalid direct producers file {path}: {problems}") from None
    try:
        return producers_from(parsed.producers, events_topic, development=development)
    except ProducerConfigError as exc:
        raise ProducerConfigError(f"direct producers file {path}: {exc}") from None


def out_of_scope(principal: Principal, event: Event) -> list[FieldError]:
    """Name what of `event` its producer may not send: its source, its type, its area.

    Locations and codes only: the source and area are not repeated (the source is the
    sender's text), the type is one of the contract's names.
    """
    errors: list[FieldError] = []
    if not principal.may_send_for(event.source):
        errors.append(FieldError(loc="source", msg="this producer may not send for this source"))
    if not principal.may_send_type(event.type):
        errors.append(
            FieldError(loc="type", msg=f"this producer may not send events of type {event.type}")
        )
    if not principal.may_see_area(getattr(event.data, "area", None)):
        errors.append(
            FieldError(loc="data.area", msg="this producer may not send events of this area")
        )
    return errors


def _record_id(action: AuditAction, message: Input) -> str:
    where = f"{action.value}|{message.topic}|{message.partition}|{message.offset}"
    return uuid.uuid5(_RECORD_IDS, where).hex


def accepted_record(
    audit_topic: str, producer: DirectProducer, event: Event, message: Input, now: datetime
) -> Record:
    """Return the `event.accepted` record of an event a producer sent, naming the producer."""
    key, value = audit_record(
        "risk",
        AuditAction.EVENT_ACCEPTED,
        producer.principal,
        now,
        event=EventRef(source=event.source, id=event.id),
        record_id=_record_id(AuditAction.EVENT_ACCEPTED, message),
    )
    return Record(audit_topic, key, value)


def refused_record(
    audit_topic: str, producer: DirectProducer, message: Input, now: datetime
) -> Record:
    """Return the `request.refused` record (403, route the producer's topic) of an input."""
    key, value = refused_request(
        "risk",
        producer.name,
        FORBIDDEN_STATUS,
        producer.topic,
        now,
        record_id=_record_id(AuditAction.REQUEST_REFUSED, message),
    )
    return Record(audit_topic, key, value)
