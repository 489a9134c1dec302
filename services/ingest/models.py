"""Bodies the ingest service answers with; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """One problem: where it is and what is wrong. Never the offending value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loc: str = Field(
        description="path of the problem: `data.children[0].child_id`, `[3].source` in a "
        "batch, `ce-id` for a binary-mode header, `(root)` for the document as a whole"
    )
    msg: str = Field(description="what is wrong")
    index: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="position of the offending event in a batch"
    )


class ErrorBody(BaseModel):
    """Every refusal: a stable code, a sentence, and the problems found (if any)."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(description="stable machine-readable code, e.g. `invalid_event`")
    message: str
    errors: list[ErrorDetail] = Field(default_factory=list)


class Accepted(BaseModel):
    """`202` for one event: the broker acknowledged it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    source: str


class BatchAccepted(BaseModel):
    """`202` for a batch: the broker acknowledged every event in it."""

    model_config = ConfigDict(extra="forbid")

    accepted: Annotated[int, Field(ge=1)] = Field(description="number of events written")


class Status(BaseModel):
    """Body of the probe pages."""

    model_config = ConfigDict(extra="forbid")

    status: str
