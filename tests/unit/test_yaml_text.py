"""The fast YAML reader reads the repository's files as PyYAML's safe loader does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common import yaml_text

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", ["policy/default.yaml", "config/dev-tokens.yaml", "deploy/prometheus/slos.yaml"]
)
def test_reads_what_the_safe_loader_reads(path: str) -> None:
    text = (REPO / path).read_text()
    assert yaml_text.load(text) == yaml.safe_load(text)


def test_refuses_python_objects() -> None:
    with pytest.raises(yaml.YAMLError):
        yaml_text.load("!!python/object/apply:os.system ['true']")


def test_reads_every_document() -> None:
    assert list(yaml_text.load_all("a: 1\n---\nb: 2\n")) == [{"a": 1}, {"b": 2}]
