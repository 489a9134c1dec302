"""YAML read safely with libyaml's parser where PyYAML has it (ten times the pure one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:  # noqa: ANN401 - whatever the document holds
    """Return the one document in `text` (`yaml.safe_load`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader


def load_all(text: str) -> Iterator[Any]:
    """Return every document in `text` (`yaml.safe_load_all`)."""
    return yaml.load_all(text, Loader=_Loader)
