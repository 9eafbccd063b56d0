"""Tolerant parsing of model output: JSON objects and Python code out of whatever text a model wrote.

Structured outputs make most answers clean JSON; this is the path for backends or models without them, and
for the free-text steps. Every function returns a status and an error message instead of raising, so the
caller records a failed parse (with the raw text) rather than dropping the output.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from rsi.corpus.text import clean_text, clean_value

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
# What the standard parsers raise on hostile input besides their documented syntax errors: json's
# int-digit limit (ValueError), nesting deeper than the interpreter's stack (RecursionError), and CPython's
# parser-stack overflow on deeply nested code, which it reports as MemoryError.
UNPARSEABLE = (ValueError, RecursionError, MemoryError)


@dataclass
class Parsed:
    status: str  # ok | empty | invalid_json | not_object | missing_fields | syntax_error | missing_entry_point
    value: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _balanced_objects(text: str) -> list[str]:
    """Every top-level {...} span, found by brace matching that respects JSON strings."""
    spans, depth, start, in_str, escape = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start:i + 1])
    return spans


def loads_untrusted(text: str) -> Any:
    """`json.loads` for model-written text: every failure (bad syntax, a number too long to convert, nesting
    too deep) is a ValueError, and the value's strings are storable (`clean_value`: a lone surrogate escape
    such as \\ud800 decodes to a code point that Parquet, tokenizers and UTF-8 files reject)."""
    try:
        return clean_value(json.loads(text, strict=False))
    except json.JSONDecodeError:
        raise
    except UNPARSEABLE as e:
        raise ValueError(f"{type(e).__name__}: {e}"[:200]) from None


def _loads(candidate: str) -> Any:
    try:
        return loads_untrusted(candidate)
    except ValueError:
        return loads_untrusted(_TRAILING_COMMA.sub(r"\1", candidate))


def parse_json_object(text: str, required: list[str] | tuple[str, ...] = ()) -> Parsed:
    """The first JSON object in `text` that has every `required` key: from the whole text, a code fence,
    or a balanced {...} span inside prose; trailing commas are forgiven, nothing else is invented."""
    if not text or not text.strip():
        return Parsed("empty", error="no text")
    stripped = text.strip()
    candidates = [stripped] + [body for _, body in _FENCE.findall(text)] + _balanced_objects(text)
    first_error, seen_object = "no JSON object found", None
    for cand in candidates:
        try:
            obj = _loads(cand.strip())
        except ValueError as e:
            first_error = first_error if first_error != "no JSON object found" else f"invalid JSON: {e}"
            continue
        if not isinstance(obj, dict):
            continue
        missing = [k for k in required if k not in obj]
        if not missing:
            return Parsed("ok", obj)
        seen_object = seen_object or (obj, missing)
    if seen_object is not None:
        return Parsed("missing_fields", seen_object[0], f"missing {seen_object[1]}")
    if stripped.startswith("[") or stripped[:1].isdigit() or stripped.startswith('"'):
        try:
            _loads(stripped)
            return Parsed("not_object", error="JSON value is not an object")
        except ValueError:
            pass
    return Parsed("invalid_json", error=first_error)


def extract_code(text: str) -> str:
    """The Python a model meant: the first python (or unlabelled) fence, else the whole text."""
    for lang, body in _FENCE.findall(text or ""):
        if lang.lower() in ("", "python", "py", "python3"):
            return body.strip("\n")
    return (text or "").strip("\n")


def parse_python(text: str, entry_point: str | None = None) -> Parsed:
    """Code that compiles and, when `entry_point` is given, defines that function at top level."""
    code = clean_text(extract_code(text))
    if not code.strip():
        return Parsed("empty", error="no code")
    try:
        tree = ast.parse(code)
    except (SyntaxError, *UNPARSEABLE) as e:
        return Parsed("syntax_error", code, f"{type(e).__name__}: {e}"[:500])
    if entry_point:
        names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if entry_point not in names:
            return Parsed("missing_entry_point", code, f"no top-level def {entry_point}")
    return Parsed("ok", code)
