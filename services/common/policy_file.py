"""Reading the one policy file that operators own; each service validates its own sections."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from services.common import yaml_text


class PolicyError(ValueError):
    """The policy file is missing or invalid; the message names the field."""


M = TypeVar("M", bound=BaseModel)


def load_policy_file(path: Path, model: type[M]) -> M:
    """Read the YAML policy file and validate it as `model`, naming the field on error."""
    try:
        raw = yaml_text.load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy file {path}: {exc}") from exc
