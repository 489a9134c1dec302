"""Records on `safeguarding.deadletter.v1`: Kafka messages that could not be accepted.

Nothing is dropped silently: a consumer that cannot parse or process a message
publishes one `DeadLetter` with the reason and the original bytes, then goes on.
"""

import base64
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StrictInt, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from schemas.envelope import ContractModel, Timestamp, dataschema
from schemas.errors import FieldError

__all__ = ["DeadLetter", "DeadLetterReason", "KeyEncoding"]

NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


class DeadLetterReason(StrEnum):
    """Why a message was dead-lettered."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"
    PROCESSING_ERROR = "processing_error"
    # A direct producer sent what its scopes do not allow (a source, type or area).
    FORBIDDEN = "forbidden"


class KeyEncoding(StrEnum):
    """How the original key bytes were turned into `key`."""

    UTF8 = "utf-8"
    BASE64 = "base64"


class DeadLetter(ContractModel):
    """A message that could not be accepted, with where it came from and why.

    `key` is the original key decoded as UTF-8 when it is valid UTF-8, else base64
    (`key_encoding` says which). `value` is the original value decoded as UTF-8 with
    invalid bytes replaced; `null` for a tombstone.
    """

    reason: DeadLetterReason
    errors: list[FieldError]
    topic: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]
    partition: NonNegativeInt
    offset: NonNegativeInt
    key: str | None
    key_encoding: KeyEncoding | None
    value: str | None
    failed_at: Timestamp
    dataschema: str = Field(
        default=dataschema("deadletter"),
        description="the record's schema and version; absent in records written before versions",
    )

    @model_validator(mode="after")
    def _key_encoding_with_key(self) -> Self:
        if (self.key is None) != (self.key_encoding is None):
            raise PydanticCustomError(
                "key_encoding",
                "key_encoding must be set exactly when key is",
            )
        return self

    @classmethod
    def from_record(  # noqa: PLR0913 - one argument per record coordinate
        cls,
        *,
        reason: DeadLetterReason,
        errors: list[FieldError],
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        failed_at: datetime,
    ) -> Self:
        """Build from the raw Kafka record, decoding key and value as documented."""
        key_text, key_encoding = _decode_key(key)
        return cls(
            reason=reason,
            errors=errors,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key_text,
            key_encoding=key_encoding,
            value=None if value is None else value.decode("utf-8", errors="replace"),
            failed_at=failed_at,
        )

    def original_key(self) -> bytes | None:
        """Return the original key bytes."""
        if self.key is None:
            return None
        if self.key_encoding is KeyEncoding.BASE64:
            return base64.b64decode(self.key)
        return self.key.encode()


def _decode_key(key: bytes | None) -> tuple[str | None, KeyEncoding | None]:
    if key is None:
        return None, None
    try:
        return key.decode("utf-8"), KeyEncoding.UTF8
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii"), KeyEncoding.BASE64
