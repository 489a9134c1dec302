"""`safeguard deadletter`: list, show and replay what the services could not accept.

    safeguard deadletter ls [--reason R] [--since T] [--until T] [--key K] [--original-topic T]
    safeguard deadletter show REF [--show-personal-data --by NAME]
    safeguard deadletter replay [REF...] [filters | --all] --by NAME [--dry-run]

REF is a dead letter's `<partition>:<offset>` on `safeguarding.deadletter.v1`, as `ls`
prints it. Nothing shown by default names a person; `--show-personal-data` adds the key
and the payload, and is audited. Every replay is audited before it is sent. The
procedure, and what a replay does on each topic: docs/runbooks/procedures/deadletter-repair.md
and services/cli/deadletters.py.
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError

from schemas.audit import ActorName, AuditAction
from schemas.deadletter import DeadLetterReason
from services.cli.deadletters import (
    DEADLETTER_TOPIC,
    Auditor,
    DeadLetterError,
    Located,
    Selection,
    personal,
    producer,
    read_dead_letters,
    replay,
    summary,
)
from services.cli.kafka_options import (
    Bootstrap,
    SaslMechanism,
    SaslPassword,
    SaslUsername,
    SecurityProtocol,
    SslCafile,
    kafka_options,
)
from services.cli.output import Output, OutputOption, fail, print_json, print_table
from services.common.audit import AUDIT_TOPIC
from services.common.auth import Principal

deadletter_app = typer.Typer(
    help="Read and repair safeguarding.deadletter.v1: list, show, replay after a fix.",
    no_args_is_help=True,
)

Reason = Annotated[
    list[DeadLetterReason] | None,
    typer.Option("--reason", help="only this reason (repeat for several)"),
]
Since = Annotated[
    str | None, typer.Option(help="failed at or after this time (ISO; UTC without offset)")
]
Until = Annotated[str | None, typer.Option(help="failed before this time (ISO)")]
Key = Annotated[str | None, typer.Option(help="only records whose original key is this")]
OriginalTopic = Annotated[str | None, typer.Option(help="only records from this topic")]
Topic = Annotated[str, typer.Option(help="the dead-letter topic")]
AuditTopic = Annotated[str, typer.Option(help="the audit topic")]
By = Annotated[
    str | None,
    typer.Option(envvar="SAFEGUARD_ACTOR", help="who acts: your name on the audit trail"),
]

_ACTOR = TypeAdapter(ActorName)


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO date or time: {text!r}", param_hint=option) from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def _actor(by: str | None, why: str) -> Principal:
    if by is None:
        raise typer.BadParameter(f"say who you are: {why} is audited", param_hint="--by")
    try:
        name = _ACTOR.validate_python(by)
    except ValidationError:
        raise typer.BadParameter(
            "letters, digits, '.', '_' and '-' only, at most 64", param_hint="--by"
        ) from None
    return Principal(name=name, sources=(), roles=frozenset())


def _read(options: dict[str, Any], topic: str, since: datetime | None) -> list[Located]:
    try:
        return read_dead_letters(options, topic, since=since)
    except DeadLetterError as exc:
        fail(str(exc))


def _selection(  # noqa: PLR0913 - one argument per filter
    refs: list[str] | None,
    *,
    reason: list[DeadLetterReason] | None,
    since: str | None,
    until: str | None,
    key: str | None,
    original_topic: str | None,
) -> Selection:
    for ref in refs or []:
        partition, _, offset = ref.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise typer.BadParameter(f"not PARTITION:OFFSET: {ref!r}", param_hint="REF")
    return Selection(
        refs=frozenset(refs or ()),
        reasons=frozenset(reason or ()),
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        key=key,
        original_topic=original_topic,
    )


def _event(item: dict[str, Any]) -> str | None:
    event = item.get("event") or {}
    if not event:
        return None
    return f"{event.get('type', '?')} {event.get('source', '?')} {event.get('id', '?')}"


def _original(item: dict[str, Any]) -> str | None:
    original = item.get("original")
    if not original:
        return None
    return f"{original['topic']} {original['partition']}:{original['offset']}"


@deadletter_app.command("ls")
def deadletter_ls(  # noqa: PLR0913 - one parameter per option
    *,
    bootstrap: Bootstrap,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    key: Key = None,
    original_topic: OriginalTopic = None,
    topic: Topic = DEADLETTER_TOPIC,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    sasl_password: SaslPassword = None,
    ssl_cafile: SslCafile = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List dead letters, oldest failure first: why each failed, never whose it is."""
    selection = _selection(
        None, reason=reason, since=since, until=until, key=key, original_topic=original_topic
    )
    options = kafka_options(
        bootstrap,
        security_protocol=security_protocol,
        sasl_mechanism=sasl_mechanism,
        sasl_username=sasl_username,
        sasl_password=sasl_password,
        ssl_cafile=ssl_cafile,
    )
    found = [
        summary(located) for located in _read(options, topic, selection.since) if selection(located)
    ]
    if output is Output.JSON:
        print_json(found)
        return
    print_table(
        ["REF", "FAILED AT", "REASON", "ORIGINAL", "EVENT", "ERRORS"],
        [
            [
                item["ref"],
                item["failed_at"],
                item["reason"],
                _original(item),
                _event(item),
                "; ".join(item["errors"]) or None,
            ]
            for item in found
        ],
    )
    typer.echo(f"dead letters: {len(found)}", err=True)


@deadletter_app.command("show")
def deadletter_show(  # noqa: PLR0913 - one parameter per option
    ref: Annotated[str, typer.Argument(help="PARTITION:OFFSET on the dead-letter topic")],
    *,
    bootstrap: Bootstrap,
    show_personal_data: Annotated[
        bool,
        typer.Option(
            "--show-personal-data",
            help="also print the original key and payload (personal data; audited)",
        ),
    ] = False,
    by: By = None,
    topic: Topic = DEADLETTER_TOPIC,
    audit_topic: AuditTopic = AUDIT_TOPIC,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    sasl_password: SaslPassword = None,
    ssl_cafile: SslCafile = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show one dead letter and why it failed; its key and payload only when asked."""
    selection = _selection(
        [ref], reason=None, since=None, until=None, key=None, original_topic=None
    )
    actor = _actor(by, "showing personal data") if show_personal_data else None
    options = kafka_options(
        bootstrap,
        security_protocol=security_protocol,
        sasl_mechanism=sasl_mechanism,
        sasl_username=sasl_username,
        sasl_password=sasl_password,
        ssl_cafile=ssl_cafile,
    )
    found = [located for located in _read(options, topic, None) if selection(located)]
    if not found:
        fail(f"no dead letter {ref} on {topic}")
    located = found[0]
    shown = summary(located)
    if actor is not None:
        send = producer(options)
        try:
            Auditor(send, actor, audit_topic, topic).record(
                AuditAction.DEADLETTER_VIEWED, [located]
            )
        except DeadLetterError as exc:
            fail(f"{exc}: the payload is not shown")
        finally:
            send.close()
        shown["personal_data"] = personal(located)
    if output is Output.JSON:
        print_json(shown)
    else:
        _print_shown(shown)
    if actor is None:
        typer.echo(
            "The key and payload are not shown: they may hold personal data. "
            "--show-personal-data --by NAME shows them, recorded on the audit trail.",
            err=True,
        )
    else:
        typer.echo(
            f"This output holds personal data: its viewing is recorded on {audit_topic} "
            f"(deadletter.viewed, by {actor.name}). Do not copy it elsewhere.",
            err=True,
        )


def _yes(value: object) -> str:
    return "yes" if value else "no"


def _print_shown(shown: dict[str, Any]) -> None:
    rows: list[tuple[str, object]] = [
        ("dead letter", shown["ref"]),
        ("failed at", shown["failed_at"]),
        ("reason", shown["reason"]),
        ("from", _original(shown)),
        ("event", _event(shown)),
        ("size", f"{shown['value_bytes']} bytes" if shown.get("value_bytes") is not None else None),
        ("replayable", _yes(shown.get("replayable"))),
    ]
    for name, value in rows:
        typer.echo(f"{name + ':':<13}{'-' if value is None else value}")
    errors = shown.get("errors") or []
    typer.echo("why:" if errors else "why:         (no errors recorded)")
    for error in errors:
        typer.echo(f"  {error}")
    data = shown.get("personal_data")
    if data:
        typer.echo(f"{'key:':<13}{data['key']} ({data['key_encoding']})")
        typer.echo("payload:")
        typer.echo(
            json.dumps(data["value"], indent=2)
            if not isinstance(data["value"], str)
            else data["value"]
        )


@deadletter_app.command("replay")
def deadletter_replay(  # noqa: PLR0913 - one parameter per option
    refs: Annotated[
        list[str] | None, typer.Argument(help="PARTITION:OFFSET of each dead letter to replay")
    ] = None,
    *,
    bootstrap: Bootstrap,
    reason: Reason = None,
    since: Since = None,
    until: Until = None,
    key: Key = None,
    original_topic: OriginalTopic = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="every dead letter on the topic")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be replayed; send nothing")
    ] = False,
    by: By = None,
    topic: Topic = DEADLETTER_TOPIC,
    audit_topic: AuditTopic = AUDIT_TOPIC,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    sasl_password: SaslPassword = None,
    ssl_cafile: SslCafile = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Send selected dead letters' original key and bytes back to their topic and partition.

    Do it after the cause is fixed. Safe to repeat: what was processed once is dropped
    as a repeat downstream. Each replay is recorded on the audit trail first.
    """
    selection = _selection(
        refs, reason=reason, since=since, until=until, key=key, original_topic=original_topic
    )
    if selection.empty and not replay_all:
        raise typer.BadParameter("name dead letters (REF...), filter them, or say --all")
    actor = None if dry_run else _actor(by, "a replay")
    options = kafka_options(
        bootstrap,
        security_protocol=security_protocol,
        sasl_mechanism=sasl_mechanism,
        sasl_username=sasl_username,
        sasl_password=sasl_password,
        ssl_cafile=ssl_cafile,
    )
    selected = [located for located in _read(options, topic, selection.since) if selection(located)]
    missing = sorted(selection.refs - {located.ref for located in selected})
    if missing:
        fail(f"no such dead letters on {topic}: {', '.join(missing)}; nothing replayed")
    if dry_run or actor is None:
        found = [summary(located) for located in selected]
        if output is Output.JSON:
            print_json(found)
        else:
            print_table(
                ["REF", "REASON", "ORIGINAL", "EVENT", "REPLAYABLE"],
                [
                    [
                        i["ref"],
                        i["reason"],
                        _original(i),
                        _event(i),
                        "yes" if i.get("replayable") else "no",
                    ]
                    for i in found
                ],
            )
        typer.echo(f"dry run: would replay {len(found)}; nothing sent", err=True)
        return
    send = producer(options)
    try:
        results = replay(selected, send, Auditor(send, actor, audit_topic, topic))
    except DeadLetterError as exc:
        fail(str(exc))
    finally:
        send.close()
    if output is Output.JSON:
        print_json([result.to_json() for result in results])
    else:
        print_table(
            ["REF", "TO", "PARTITION", "OFFSET", "RESULT"],
            [[r.ref, r.topic, r.partition, r.offset, r.problem or "replayed"] for r in results],
        )
    failed = [r for r in results if r.problem is not None]
    sent = len(results) - len(failed)
    audited = f"; recorded on {audit_topic} as deadletter.replayed by {actor.name}" if sent else ""
    typer.echo(f"{sent} replayed, {len(failed)} not{audited}", err=True)
    if failed:
        raise typer.Exit(1)
