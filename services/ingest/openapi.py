"""The OpenAPI 3.1 description of the ingest service, generated from the models.

    python -m services.ingest.openapi            # (re)write services/ingest/openapi.json
    python -m services.ingest.openapi --check    # exit 1 if the committed file drifted

The service serves the generated document at `/openapi.json`; the committed file is
what other teams read, so a test fails when the two differ (as for `schemas/json/`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.events import Event
from services.common import openapi_file
from services.ingest.decoding import (
    BINARY_ATTRIBUTES,
    CLOUDEVENTS_BATCH,
    CLOUDEVENTS_JSON,
    JSON,
    MAX_BATCH,
)
from services.ingest.models import Accepted, BatchAccepted, ErrorBody, Status

COMMITTED = Path(__file__).parent / "openapi.json"
_REF = "#/components/schemas/{model}"


def _schema(target: Any, components: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    schema = TypeAdapter(target).json_schema(ref_template=_REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("ErrorBody")}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "the scheme to use", "schema": {"type": "string"}}
}


def _refusals() -> dict[str, Any]:
    return {
        "400": _error("the body is not JSON"),
        "401": _error("no token, or a token nobody configured", _WWW_AUTHENTICATE),
        "403": _error(
            "the token lacks the send role, or may not send for an event's source or its type "
            "(each named in `errors`)"
        ),
        "408": _error("the body did not arrive within the time allowed (10 s by default)"),
        "413": _error("the body is over the size limit (1 MiB by default)"),
        "415": _error("a media type the endpoint does not take, or a charset other than UTF-8"),
        "422": _error("not valid against the contract; `errors` lists every problem"),
        "503": _error(
            "the broker did not acknowledge the audit record or the events in time; retry "
            "after the given delay. Some may have been written: a retry is deduplicated by "
            "(source, id), and no event is written before the record of who sent it",
            _RETRY_AFTER,
        ),
    }


def _binary_headers() -> list[dict[str, Any]]:
    return [
        {
            "name": f"ce-{attribute}",
            "in": "header",
            "required": False,
            "description": f"binary mode: the `{attribute}` attribute, percent-encoded",
            "schema": {"type": "string"},
        }
        for attribute in sorted(BINARY_ATTRIBUTES)
    ]


def document() -> dict[str, Any]:
    """Return the OpenAPI document as a JSON-compatible dict."""
    components: dict[str, Any] = {}
    components["Event"] = _schema(Event, components)
    for model in (Accepted, BatchAccepted, ErrorBody, Status):
        components[model.__name__] = _schema(model, components)
    batch = {"type": "array", "items": _ref("Event"), "minItems": 1, "maxItems": MAX_BATCH}
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safeguard ingest",
            "version": "1",
            "description": (
                "The door through which control rooms send CloudEvents (docs/contract.md "
                "section 6). `202` is answered only after the broker acknowledged the "
                "write (acks=all); nothing refused is written."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(components.items())),
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "postEvent",
                    "summary": "Send one event",
                    "description": (
                        "Structured mode: the whole event as the body, as "
                        f"`{CLOUDEVENTS_JSON}` or `{JSON}`. Binary mode: the attributes "
                        f"as `ce-*` headers (with `ce-specversion`) and `data` as a `{JSON}` "
                        "body. A charset parameter other than UTF-8 is refused."
                    ),
                    "security": secured,
                    "parameters": _binary_headers(),
                    "requestBody": {
                        "required": True,
                        "content": {
                            CLOUDEVENTS_JSON: {"schema": _ref("Event")},
                            JSON: {"schema": _ref("Event")},
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "the broker has the event",
                            "content": {JSON: {"schema": _ref("Accepted")}},
                        },
                        **_refusals(),
                    },
                }
            },
            "/v1/events/batch": {
                "post": {
                    "operationId": "postBatch",
                    "summary": f"Send 1 to {MAX_BATCH} events, all valid or none written",
                    "description": (
                        "Every event is validated and authorised before anything is "
                        "written; a `422` or `403` names each offending item's `index`."
                    ),
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {CLOUDEVENTS_BATCH: {"schema": batch}},
                    },
                    "responses": {
                        "202": {
                            "description": "the broker has every event",
                            "content": {JSON: {"schema": _ref("BatchAccepted")}},
                        },
                        **_refusals(),
                    },
                }
            },
            "/healthz": _probe("liveness: the process answers", ready=False),
            "/readyz": _probe("readiness: the broker answers for the events topic", ready=True),
            **openapi_file.metrics_and_document_paths(),
        },
    }


def _probe(summary: str, *, ready: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "ok", "content": {JSON: {"schema": _ref("Status")}}}
    }
    if ready:
        responses["503"] = {
            "description": "the broker did not answer in time",
            "headers": _RETRY_AFTER,
            "content": {JSON: {"schema": _ref("Status")}},
        }
    return {
        "get": {
            "operationId": "readyz" if ready else "healthz",
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def render() -> str:
    """Return the document as the committed file's text."""
    return openapi_file.render(document)


def drifted(path: Path = COMMITTED) -> bool:
    """Tell whether the committed file differs from the generated document."""
    return openapi_file.drifted(document, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    return openapi_file.main(
        argv, module="services.ingest.openapi", document=document, committed=COMMITTED
    )


if __name__ == "__main__":
    sys.exit(main())
