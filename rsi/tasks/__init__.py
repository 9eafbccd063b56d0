"""Task families: what the model is asked to do, how its answers are parsed and what judges look for.

A family is found by the key under `tasks:` in the config: a registered family, else the module
`rsi.tasks.<name>` (its `FAMILY`), else `some.module:ATTR`.
"""

from __future__ import annotations

import importlib

from rsi.tasks.family import Family

BUILTIN = ("programming", "python_output", "open_ended", "code_review", "negotiation")
_REGISTERED: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make a family defined elsewhere (a notebook, a test, a plugin) selectable by its name."""
    _REGISTERED[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, _, attr = (name if ":" in name else f"rsi.tasks.{name}").partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise KeyError(f"unknown task family {name!r} (built in: {', '.join(BUILTIN)})") from e
    family = getattr(module, attr or "FAMILY", None)
    if not isinstance(family, Family):
        raise KeyError(f"{name!r} names no Family")
    return family
