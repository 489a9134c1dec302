"""`safeguard`: the command line for people and SREs.

    safeguard policy check FILE          validate a policy file as the services load it
    safeguard policy routes FILE         who is told, at which level and when
    safeguard policy diff OLD NEW        what changes, in words; --events: the alerts too
    safeguard alerts ls|show|ack|resolve the desk's alert API
    safeguard backtest --events --policy replay recorded events under a candidate policy
    safeguard export --since --bootstrap the events topic as JSON lines for the backtest
    safeguard deadletter ls|show|replay  read and repair safeguarding.deadletter.v1
    safeguard db upgrade|status          the desk's database schema

Shell completion: `safeguard --install-completion`. Exit codes: 0 done, 1 the input or the
API said no (the message says why), 2 a usage error.
"""

# Typer reads the annotations at run time: no `from __future__ import annotations` here.

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.api import AlertApi, ApiError
from services.cli.backtest import BadArrival, Result, backtest
from services.cli.database import db_app
from services.cli.deadletter_commands import deadletter_app
from services.cli.export import ExportError, export
from services.cli.output import Output, OutputOption, cell, fail, print_json, print_table
from services.cli.policies import Checked, check_policy, parse_at, routes, rule_routes
from services.cli.policy_diff import alert_changes, describe, notes
from services.cli.report import report_app
from services.common.durations import format_duration
from services.common.kafka import KafkaSettings, Topics
from services.common.logging import configure_logging

app = typer.Typer(
    name="safeguard",
    help="Safeguard's command line: policy files, alerts, backtests and exports.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="Check a policy file, show its routes, compare two.", no_args_is_help=True
)
alerts_app = typer.Typer(help="List, read, acknowledge and resolve alerts.", no_args_is_help=True)


@app.callback()
def _quiet_logs() -> None:
    # A command's output is its result: only warnings from the code it runs, on stderr.
    configure_logging(json=False, level="WARNING")


app.add_typer(policy_app, name="policy")
app.add_typer(alerts_app, name="alerts")
app.add_typer(report_app, name="report")  # `report timeliness`: services/cli/report.py
app.add_typer(deadletter_app, name="deadletter")  # services/cli/deadletter_commands.py
app.add_typer(db_app, name="db")  # `db upgrade`, `db status`: services/cli/database.py

DEFAULT_URL = "http://127.0.0.1:8084"


UrlOption = Annotated[str, typer.Option(envvar="SAFEGUARD_URL", help="base URL of the desk")]
TokenOption = Annotated[
    str | None,
    typer.Option(envvar="SAFEGUARD_TOKEN", help="bearer token (better: SAFEGUARD_TOKEN)"),
]


# --- policy ---------------------------------------------------------------------------


def _checked(path: Path) -> Checked:
    result = check_policy(path)
    if isinstance(result, list):
        for problem in result:
            typer.echo(problem.render(path), err=True)
        raise typer.Exit(1)
    return result


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="the policy file (YAML)")],
) -> None:
    """Validate a policy file with the risk and notify services' own loaders."""
    checked = _checked(file)
    typer.echo(f"{file}: valid for risk and notify")
    defaulted = checked.notify.receivers_without_url()
    if defaulted:
        typer.echo(f"webhook receivers using NOTIFY_WEBHOOK_URL: {', '.join(defaulted)}")
    secrets = sorted(checked.notify.secret_names())
    if secrets:
        names = ", ".join(f"NOTIFY_WEBHOOK_SECRETS__{s.upper()}" for s in secrets)
        typer.echo(f"signing secrets to set: {names}")


@policy_app.command("routes")
def policy_routes(
    file: Annotated[Path, typer.Argument(help="the policy file (YAML)")],
    output: OutputOption = Output.TABLE,
    at: Annotated[
        str | None,
        typer.Option(help="who the rota has on duty then: ISO time, local without offset"),
    ] = None,
) -> None:
    """Show who is told, at which level and when, for each severity and area, and per rule."""
    checked = _checked(file)
    try:
        when = None if at is None else parse_at(at, checked.notify)
    except ValueError:
        fail("--at: not an ISO 8601 time (2026-12-03T19:00, or with an offset)")
    found = routes(checked.notify, when)
    by_rule = rule_routes(checked, when)
    if output is Output.JSON:
        print_json(
            {"ladders": [r.to_json() for r in found], "rules": [r.to_json() for r in by_rule]}
        )
        return
    print_table(
        ["AREA", "SEVERITY", "LEVEL", "AFTER", "ROUTE", "RECIPIENTS", "REPEAT"],
        [
            [
                r.area or "(default)",
                r.severity.value,
                r.level,
                format_duration(r.after),
                r.route,
                "; ".join(r.recipients),
                format_duration(r.repeat) if r.repeat else None,
            ]
            for r in found
        ],
    )
    typer.echo("")
    print_table(
        ["RULE", "SEVERITY", "AREA", "START", "RECIPIENTS"],
        [
            [
                r.rule,
                r.severity.value,
                r.area or "(default)",
                r.start_level,
                "; ".join(r.recipients),
            ]
            for r in by_rule
        ],
    )


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="the policy in force (YAML)")],
    new: Annotated[Path, typer.Argument(help="the proposed policy (YAML)")],
    events: Annotated[
        Path | None,
        typer.Option(help="also backtest both on these events (`safeguard export` lines)"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="with --events: run the clock on to this time (ISO)"),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Say what changes from OLD to NEW: windows, severities, ladders, routes, receivers.

    With --events, replay the recorded events under both (as `safeguard backtest` does)
    and print per rule the alerts each raises, and how many only one of them raises.
    """
    changes = describe(_checked(old), _checked(new))
    compared = None
    if events is not None:
        if events == Path("-"):
            fail("--events must be a file: both policies read it")
        end = _when(until, "--until")
        compared = alert_changes(_replay(events, old, end), _replay(events, new, end))
    if output is Output.JSON:
        print_json(
            {
                "changes": [c.to_json() for c in changes],
                "notes": notes(changes),
                "alerts": None if compared is None else [r.to_json() for r in compared],
            }
        )
        return
    if not changes:
        typer.echo(f"{old} and {new} are the same policy to both services")
    section = None
    for change in changes:
        if change.section != section:
            section = change.section
            typer.echo(section.replace("_", " "))
        typer.echo(f"  - {change.text}")
    for note in notes(changes):
        typer.echo(f"\n{note}")
    if compared is not None:
        typer.echo("")
        print_table(
            ["RULE", "ALERTS OLD", "ALERTS NEW", "CHANGE", "ONLY OLD", "ONLY NEW"],
            [[r.rule, r.old, r.new, f"{r.change:+d}", r.only_old, r.only_new] for r in compared],
        )


# --- alerts ---------------------------------------------------------------------------


def _api(url: str, token: str | None) -> AlertApi:
    return AlertApi(url, token)


@alerts_app.command("ls")
def alerts_ls(  # noqa: PLR0913, PLR0917 - one parameter per option
    status: Annotated[
        str | None, typer.Option(help="open, acknowledged or resolved (default: all)")
    ] = None,
    rule: Annotated[str | None, typer.Option(help="only this rule")] = None,
    severity: Annotated[str | None, typer.Option(help="only this severity")] = None,
    area: Annotated[str | None, typer.Option(help="only this area")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many alerts")] = 100,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """List alerts, newest first: every alert, whichever desk pod answers."""
    filters = {"status": status, "rule": rule, "severity": severity, "area": area}
    try:
        with _api(url, token) as api:
            alerts = api.list(filters, limit)
    except ApiError as exc:
        fail(str(exc))
    if output is Output.JSON:
        print_json({"alerts": alerts})
        return
    print_table(
        ["ALERT", "RULE", "SEVERITY", "STATUS", "LEVEL", "RAISED", "SUBJECT", "AREA"],
        [
            [
                a["alert_id"],
                a["rule"],
                a["severity"],
                a["status"],
                a["level"],
                a["raised_at"],
                f"{a['subject_kind']}:{a['subject_id']}",
                a.get("area"),
            ]
            for a in alerts
        ],
    )


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[str, typer.Argument(help="the alert's id")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show one alert and its timeline."""
    try:
        with _api(url, token) as api:
            record = api.get(alert_id)
    except ApiError as exc:
        fail(str(exc))
    if output is Output.JSON:
        print_json(record)
        return
    alert: dict[str, Any] = record.get("alert", {})
    fields = {
        "alert": alert.get("alert_id"),
        "status": record.get("status"),
        "level": record.get("level"),
        "rule": alert.get("rule"),
        "severity": alert.get("severity"),
        "subject": f"{alert.get('subject_kind')}:{_subject(alert)}",
        "area": alert.get("area"),
        "raised": alert.get("raised_at"),
        "due": alert.get("due_at"),
        "summary": alert.get("summary"),
    }
    for name, value in fields.items():
        typer.echo(f"{name + ':':<10}{cell(value)}")
    timeline = record.get("timeline", [])
    if timeline:
        typer.echo("")
        print_table(
            ["AT", "KIND", "DETAIL"],
            [[e.get("at"), e.get("kind"), _detail(e)] for e in timeline],
        )


def _subject(alert: dict[str, Any]) -> object:
    kind = alert.get("subject_kind")
    return alert.get(f"{kind}_id") or alert.get("subject_id")


def _detail(entry: dict[str, Any]) -> str:
    rest = {k: v for k, v in entry.items() if k not in {"at", "kind"}}
    return json.dumps(rest, separators=(",", ":"), default=str) if rest else ""


def _act(api: AlertApi, action: str, alert_id: str, *, by: str | None, note: str | None) -> None:
    try:
        with api:
            answer = api.act(alert_id, action, by=by, note=note)
    except ApiError as exc:
        fail(str(exc))
    typer.echo(f"{alert_id}: {answer.get('status', 'accepted')} (event {answer.get('event_id')})")


ByOption = Annotated[str | None, typer.Option(help="who acts (default: the token's name)")]
NoteOption = Annotated[str | None, typer.Option(help="a note for the timeline")]


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="the alert's id")],
    by: ByOption = None,
    note: NoteOption = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Acknowledge an open alert: escalation stops at its current level."""
    _act(_api(url, token), "ack", alert_id, by=by, note=note)


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[str, typer.Argument(help="the alert's id")],
    by: ByOption = None,
    note: NoteOption = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Resolve an open or acknowledged alert by hand."""
    _act(_api(url, token), "resolve", alert_id, by=by, note=note)


# --- backtest and export --------------------------------------------------------------


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO date or time: {text!r}", param_hint=option) from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def _replay(events: Path, policy_file: Path, until: datetime | None) -> Result:
    policy = _checked(policy_file).risk
    # With the deployment's secret the backtest's alert ids are the production ones, so
    # its alerts can be matched with those the service raised; without it they differ.
    secret = os.environ.get("RISK_ALERT_ID_SECRET")
    if secret:
        policy = policy.with_alert_key(secret.encode())
    try:
        with events.open("rb") if str(events) != "-" else _stdin() as lines:
            return backtest(lines, policy, until=until)
    except OSError as exc:
        fail(f"cannot read {events}: {exc.strerror}")
    except BadArrival as exc:
        fail(f"{events}: {exc}")


def _stdin() -> Any:  # noqa: ANN401 - a binary stream that must not be closed
    class _Borrowed:
        def __enter__(self) -> Any:  # noqa: ANN401
            return sys.stdin.buffer

        def __exit__(self, *_: object) -> None:
            return None

    return _Borrowed()


@app.command("backtest")
def backtest_command(
    events: Annotated[
        Path,
        typer.Option(help="JSON lines of CloudEvents, as `safeguard export` writes; - for stdin"),
    ],
    policy: Annotated[Path, typer.Option(help="the candidate policy file")],
    baseline: Annotated[
        Path | None, typer.Option(help="the policy to compare with, e.g. policy/default.yaml")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="run the clock on to this time (ISO; default: the last arrival)"),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Replay recorded events through the risk engine under a policy, on a simulated clock.

    Prints per rule and policy: alerts raised, breaches, breaches resolved, alerts per
    week, and timeliness (obligations due, met on time, met late, open and overdue).
    With RISK_ALERT_ID_SECRET set, alert ids are the deployment's own.
    """
    end = _when(until, "--until")
    if events == Path("-") and baseline is not None:
        fail("--baseline needs --events to be a file: stdin can be read once")
    results: dict[str, Result] = {}
    if baseline is not None:
        results["baseline"] = _replay(events, baseline, end)
    results["candidate"] = _replay(events, policy, end)
    if output is Output.JSON:
        print_json({name: result.to_json() for name, result in results.items()})
        return
    _print_backtest(results)


def _print_backtest(results: dict[str, Result]) -> None:
    first = next(iter(results.values()))
    summary = first.to_json()
    typer.echo(
        f"events {first.events}, duplicates {first.duplicates}, rejected "
        f"{sum(first.rejected.values())}, from {summary['start']} to {summary['end']}"
        + (f" ({first.weeks:.1f} weeks)" if first.weeks else "")
    )
    rules = sorted({rule for result in results.values() for rule in result.rules})
    rows: list[list[object]] = []
    for rule in [*rules, "(all)"]:
        for name, result in results.items():
            figures = result.to_json()["total" if rule == "(all)" else "rules"]
            if rule != "(all)":
                figures = figures.get(rule)
            if figures is None:
                continue
            rows.append(
                [
                    rule,
                    name,
                    figures["alerts"],
                    figures["breaches"],
                    figures["resolved_late"],
                    figures["alerts_per_week"],
                    figures["obligations_due"],
                    figures["met_on_time"],
                    figures["met_late"],
                    figures["open_overdue"],
                    figures["on_time_percent"],
                ]
            )
    print_table(
        [
            "RULE",
            "POLICY",
            "ALERTS",
            "BREACHES",
            "RESOLVED",
            "ALERTS/WK",
            "DUE",
            "ON TIME",
            "LATE",
            "OVERDUE",
            "% ON TIME",
        ],
        rows,
    )


@app.command("export")
def export_command(  # noqa: PLR0913, PLR0917 - one parameter per option
    since: Annotated[
        str, typer.Option(help="from this time on (ISO date or time, UTC if no offset)")
    ],
    bootstrap: Annotated[
        str, typer.Option(envvar="SAFEGUARD_KAFKA_BOOTSTRAP", help="HOST:PORT[,HOST:PORT]")
    ],
    topic: Annotated[str, typer.Option(help="the events topic")] = Topics().events,
    security_protocol: Annotated[
        str, typer.Option(help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    ] = "PLAINTEXT",
    sasl_mechanism: Annotated[str | None, typer.Option(help="PLAIN, SCRAM-SHA-256 or -512")] = None,
    sasl_username: Annotated[str | None, typer.Option()] = None,
    sasl_password: Annotated[
        str | None,
        typer.Option(envvar="SAFEGUARD_KAFKA_PASSWORD", help="better: SAFEGUARD_KAFKA_PASSWORD"),
    ] = None,
    ssl_cafile: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Write the events topic from --since to its current end as JSON lines on stdout.

    Each line is the CloudEvent with `recordedat`, the broker's timestamp, added: the
    backtest's arrival time.
    """
    start = _when(since, "--since")
    assert start is not None  # noqa: S101 - the option is required
    try:
        settings = KafkaSettings.model_validate(
            {
                "bootstrap_servers": bootstrap,
                "security_protocol": security_protocol,
                "sasl_mechanism": sasl_mechanism,
                "sasl_username": sasl_username,
                "sasl_password": sasl_password,
                "ssl_cafile": ssl_cafile,
            }
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc).splitlines()[0]) from None
    try:
        summary = export(settings.kafka_python_options(), topic, start, sys.stdout)
    except ExportError as exc:
        fail(str(exc))
    typer.echo(
        f"exported {summary.written} events ({summary.skipped} not JSON objects left out) "
        f"from {summary.first} to {summary.last}",
        err=True,
    )
