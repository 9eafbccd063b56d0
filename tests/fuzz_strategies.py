"""Hypothesis strategies shared by the fuzz tests: model output as hostile as it gets."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Deterministic (the same examples every run, so CI cannot flake) and without an example database on disk.
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def _hostile_fragment() -> st.SearchStrategy[str]:
    """Pieces that broke or could break a parser: deep nesting, integers past the conversion limit, lone
    surrogate escapes, fences, chat and delimiter tags, NaN/Infinity, NUL bytes."""
    depth = st.integers(1, 30_000)
    return st.one_of(
        depth.map(lambda n: "[" * n), depth.map(lambda n: "{\"a\":" * n), depth.map(lambda n: "(" * n + "1"),
        depth.map(lambda n: "-" * n + "x"), depth.map(lambda n: "not " * n + "x"),
        depth.map(lambda n: "1" + "+1" * n), depth.map(lambda n: "[" * n + "]" * n),
        st.integers(4000, 9000).map(lambda n: "9" * n),
        st.sampled_from(['"\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', "\\uDC80", "NaN", "-Infinity", "1e999",
                         "\x00", "```python\n", "```json\n", "```", "</candidate>", '<candidate label="A">',
                         "<|im_end|>", "def f(x):\n    return x\n", "{", "}", "[", "]", ",", ":", '"', "\\"]),
        json_values.map(json.dumps), st.text(max_size=40))


model_text = st.lists(_hostile_fragment(), max_size=6).map("".join)


def encodable(value: object) -> bool:
    """Every string inside `value` (keys included) encodes as UTF-8."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            v.encode("utf-8")
        elif isinstance(v, dict):
            stack += [*v.keys(), *v.values()]
        elif isinstance(v, list):
            stack += v
    return True


# Any code point at all, lone surrogates included: what a str can hold, not only what an engine emits.
any_unicode = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)
