"""`Choice`: the base of every string-valued config choice.

A config field typed with a `Choice` subclass is checked by OmegaConf when the config is built: a value that is
not a member fails there, with the key in the message. Members compare equal to their strings and format as
them, so `cfg.judging.mode == "pairwise"` and f-strings read as they would with plain strings.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
