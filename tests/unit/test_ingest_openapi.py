"""The committed OpenAPI document matches the one generated from the models and served."""

from __future__ import annotations

import json
from pathlib import Path

from services.ingest.decoding import MAX_BATCH
from services.ingest.openapi import COMMITTED, document, drifted, main, render


def test_committed_openapi_matches_the_generated_document() -> None:
    assert not drifted(), "run `python -m services.ingest.openapi` and commit openapi.json"


def test_drift_is_detected_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "openapi.json"
    assert main(["--check", "--path", str(path)]) == 1  # missing
    assert main(["--path", str(path)]) == 0
    assert main(["--check", "--path", str(path)]) == 0
    stale = json.loads(path.read_text())
    stale["paths"]["/v1/events"]["post"]["responses"].pop("413")
    path.write_text(json.dumps(stale))
    assert drifted(path)
    assert main(["--check", "--path", str(path)]) == 1


def test_document_lists_every_status_of_the_contract() -> None:
    doc = document()
    for path in ("/v1/events", "/v1/events/batch"):
        responses = doc["paths"][path]["post"]["responses"]
        assert set(responses) == {"202", "400", "401", "403", "408", "413", "415", "422", "503"}
        assert "Retry-After" in responses["503"]["headers"]
    batch = doc["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]
    assert batch["application/cloudevents-batch+json"]["schema"]["maxItems"] == MAX_BATCH
    assert json.loads(render()) == doc
    assert COMMITTED.name == "openapi.json"
