"""The notify service: escalation ladder, acknowledgements, deliveries, audit trail.

Modules, from pure to wired:

- `policy`: the `escalation`, `routing` and `receivers` sections of the policy file;
  `chain_for` snapshots an alert's ladder (recipients resolved by area) at raise time.
- `ledger`: the per-alert record kept in the table.
- `escalation`: the state machine (pure; `advance`, `on_outcome`, `on_acknowledged`,
  `on_resolved`, `on_closed`, `next_due`, `upcoming`).
- `alert_view`: the view of an alert published for the desk.
- `logic`: the stream core's decisions for notify, with their effects as data.
- `retry`, `channels`, `delivery`, `dispatch`: backoff and `Retry-After`; signed webhooks
  and SMTP; one notification's attempts within its budget; deliveries in the background.
- `app`, `main`: the Faust wiring and the entry point.

Operators set webhook signing secrets as `NOTIFY_WEBHOOK_SECRETS__<NAME>` (the name the
policy's receiver gives), the default webhook URL as `NOTIFY_WEBHOOK_URL`, the mail relay
as `NOTIFY_SMTP__HOST`/`PORT`/`SECURITY` (`starttls`, `tls`, `none`)/`USERNAME`/
`PASSWORD`/`SENDER`, and the policy file as `NOTIFY_POLICY_FILE`. The service refuses to
start when a secret or URL the policy needs is missing.
"""
