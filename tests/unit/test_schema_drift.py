"""The committed JSON Schema files match the models they are generated from."""

import json
from pathlib import Path

from schemas.generate import DEFAULT_OUTPUT_DIR, drift, main, render, write


def test_committed_schemas_match_the_models() -> None:
    assert drift() == [], "run `python -m schemas.generate` and commit schemas/json/"


def test_every_schema_is_a_strict_json_object_schema() -> None:
    for name, text in render().items():
        schema = json.loads(text)
        assert schema["$id"] == f"urn:safeguard:schema:{name.removesuffix('.json')}"
        assert schema["additionalProperties"] is False, name


def test_drift_is_detected_and_repaired(tmp_path: Path) -> None:
    assert write(tmp_path) == list(render())
    assert drift(tmp_path) == []
    assert write(tmp_path) == []  # idempotent

    (tmp_path / "child.found.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "child.lost.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "envelope.json").unlink()
    assert drift(tmp_path) == [
        "missing: envelope.json",
        "drifted: child.found.json",
        "extra: child.lost.json",
    ]
    assert main(["--check", "--output-dir", str(tmp_path)]) == 1

    assert main(["--output-dir", str(tmp_path)]) == 0
    assert drift(tmp_path) == []
    assert main(["--check", "--output-dir", str(tmp_path)]) == 0


def test_default_output_dir_is_in_the_package() -> None:
    assert Path(__file__).parents[2] / "schemas" / "json" == DEFAULT_OUTPUT_DIR
