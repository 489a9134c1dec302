"""The keys risk's state is found by: a subject's, and an obligation's within its subject.

Each key has one format and one parse, so the table, the `-subjects` topic and the
engine cannot disagree about how `child:C-1` or `welfare-check|INC-1` is spelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.alerts import SubjectKind

__all__ = ["InvalidKey", "ObligationKey", "SubjectKey", "SubjectKind"]


class InvalidKey(ValueError):
    """A key that is not spelled as this module formats them."""


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """A subject: a child, an offender or an enquiry, as `kind:id`."""

    kind: SubjectKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    def encode(self) -> bytes:
        """Return the key as the table and the `-subjects` topic hold it."""
        return str(self).encode()

    @classmethod
    def parse(cls, text: str | bytes) -> SubjectKey:
        """Return the subject a key names; raise InvalidKey if it names none."""
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        kind, separator, subject_id = text.partition(":")
        if not separator or not subject_id or kind not in SubjectKind.__members__.values():
            raise InvalidKey("a subject key is `<child|offender|enquiry>:<id>`")
        return cls(SubjectKind(kind), subject_id)


@dataclass(frozen=True, slots=True)
class ObligationKey:
    """An obligation within its subject: its rule and what it is per, as `rule|scope`."""

    rule: str
    scope: str

    def __str__(self) -> str:
        return f"{self.rule}|{self.scope}"

    @classmethod
    def parse(cls, text: str) -> ObligationKey:
        """Return the obligation a key names; raise InvalidKey if it names none."""
        rule, separator, scope = text.partition("|")
        if not separator or not rule:
            raise InvalidKey("an obligation key is `<rule>|<scope>`")
        return cls(rule, scope)
