"""`Choice`: the base of every string-valued config choice.

A config field typed with a `Choice` subclass is checked by OmegaConf when the config is built: a value that is
not a member fails there, with the key in the message. Members compare equal to their strings, hash and format
as them, so `cfg.judging.mode == "pairwise"`, dict lookups and f-strings read as they would with plain strings.
Where a library wants a plain `str`, pass `str(member)`.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from functools import cache
from typing import Any


class Choice(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __hash__(self) -> int:  # as the string's, also for a member whose name differs from its value
        return hash(self.value)


@cache
def _choice_fields(cls: type) -> tuple[tuple[str, type[Choice]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls)
                 if isinstance(hints[f.name], type) and issubclass(hints[f.name], Choice))


def check_choices(obj: Any, prefix: str) -> None:
    """Raise ValueError naming `prefix.field` for a Choice field of dataclass `obj` that holds no member's value.

    OmegaConf does this for a composed config; this covers dataclasses built or changed in code, which may hold
    plain strings (those that name a member work as the member would).
    """
    for name, kind in _choice_fields(type(obj)):
        value = getattr(obj, name)
        try:
            kind(value)
        except ValueError:
            key = f"{prefix}.{name}" if prefix else name
            raise ValueError(f"{key}: unknown {value!r} ({' | '.join(m.value for m in kind)})") from None
