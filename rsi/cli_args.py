"""What every argparse verb of `rsi` shares: a parser whose refusal is one line, and typed converters that refuse
a number out of range. argparse's own `type=float` takes `nan`, `inf`, `-3` and `1e308`, which then reach a
timeout or a size as a silent zero score or a traceback; these converters name the flag instead.

    p = ArgParser(prog="rsi eval humaneval")
    p.add_argument("--timeout", type=bounded_float(0.01, 86_400), default=3.0)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn


class ArgParser(argparse.ArgumentParser):
    """argparse with a one-line refusal on stderr, `PROG: argument --flag: why`, and exit status 2 (argparse's):
    the usage block argparse prints above it would bury the line that says what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _bounded(lo: float, hi: float, integer: bool) -> Callable[[str], Any]:
    def convert(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if not lo <= value <= hi:
            bounds = f"an integer from {lo} to {hi}" if integer else f"at least {lo:g} and at most {hi:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value

    convert.__name__ = "integer" if integer else "number"  # argparse names the type in some messages
    return convert


def bounded_float(lo: float, hi: float) -> Callable[[str], float]:
    """A converter to a finite float in [lo, hi]."""
    return _bounded(lo, hi, integer=False)


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """A converter to an integer in [lo, hi]."""
    return _bounded(lo, hi, integer=True)


def int_list(lo: int, hi: int) -> Callable[[str], list[int]]:
    """A converter of `1,10,100` to integers each in [lo, hi], at least one."""
    one = bounded_int(lo, hi)

    def convert(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers")
        return [one(p) for p in parts]

    convert.__name__ = "integer list"
    return convert
