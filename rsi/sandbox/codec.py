"""Tagged JSON for values crossing a sandbox boundary (stdlib only: it also runs inside the sandbox).

Values are rebuilt on the receiving side from plain JSON into *exact* builtin types, so whatever the
sender was (an object with `__eq__` always true, an int subclass, a pickle payload) the receiver only
ever compares ints, strs, lists... that it constructed itself. Tuples, sets, bytes, complex numbers and
non-finite floats keep their type, which HumanEval's tests rely on (`== (1, 2)` is not `== [1, 2]`).
"""

import base64
import json
import math
from typing import Any

MAX_DEPTH = 100


class CodecError(ValueError):
    """A value that cannot cross the boundary (unsupported type, too deep, malformed)."""


def encode(value: Any, depth: int = 0) -> Any:
    """Python value -> JSON-able structure. Dicts and tagged types become one-key `{"$x": ...}` dicts."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    # bool before int: bool is an int subclass with its own identity in test expectations.
    if value is None or type(value) is bool or type(value) is str:
        return value
    # Subclasses are reduced through the base type's own slots, not the subclass's overrides: an IntEnum
    # is its int, whatever __int__ or __eq__ it defines.
    if isinstance(value, bool):
        return int.__index__(value) == 1
    if isinstance(value, int):
        v = int.__index__(value)
        # json refuses ints above sys.int_info's digit limit; hex has no such limit.
        return v if abs(v) < 10**300 else {"$i": hex(v)}
    if isinstance(value, float):
        v = float.__float__(value)
        if math.isfinite(v):
            return v
        return {"$f": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [encode(x, depth + 1) for x in value]
    if isinstance(value, tuple):
        return {"$t": [encode(x, depth + 1) for x in value]}
    if isinstance(value, dict):
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, frozenset):
        return {"$fs": [encode(x, depth + 1) for x in value]}
    if isinstance(value, set):
        return {"$s": [encode(x, depth + 1) for x in value]}
    if isinstance(value, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, complex):
        return {"$c": [encode(value.real, depth + 1), encode(value.imag, depth + 1)]}
    raise CodecError(f"cannot serialise a value of type {type(value).__name__}")


def _float(tag: Any) -> float:
    if tag not in ("nan", "inf", "-inf"):
        raise CodecError("bad float tag")
    return float(tag)


def decode(obj: Any, depth: int = 0) -> Any:
    """JSON structure (from json.loads) -> fresh builtin values. Never calls code of the sender."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    t = type(obj)
    if obj is None or t is bool or t is int or t is float or t is str:
        return obj
    if t is list:
        return [decode(x, depth + 1) for x in obj]
    if t is not dict or len(obj) != 1:
        raise CodecError("malformed value")
    ((tag, body),) = obj.items()
    if tag == "$i" and type(body) is str:
        return int(body, 16)
    if tag == "$f":
        return _float(body)
    if tag == "$b" and type(body) is str:
        return base64.b64decode(body, validate=True)
    if type(body) is not list:
        raise CodecError("malformed value")
    if tag == "$t":
        return tuple(decode(x, depth + 1) for x in body)
    if tag == "$s":
        return {decode(x, depth + 1) for x in body}
    if tag == "$fs":
        return frozenset(decode(x, depth + 1) for x in body)
    if tag == "$c" and len(body) == 2:
        re, im = (decode(x, depth + 1) for x in body)
        if type(re) is not float and type(re) is not int or type(im) is not float and type(im) is not int:
            raise CodecError("malformed complex")
        return complex(re, im)
    if tag == "$d":
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise CodecError("malformed dict")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    raise CodecError(f"unknown tag {tag!r}")


def decode_untrusted(obj: Any) -> Any:
    """decode() for data from the program side: any failure is a CodecError, never another exception."""
    try:
        return decode(obj)
    except CodecError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise CodecError(f"{type(exc).__name__} while decoding") from None


def dumps(value: Any) -> str:
    return json.dumps(encode(value), ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    try:
        obj = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CodecError(f"not JSON: {type(exc).__name__}") from None
    return decode_untrusted(obj)


def canonical(plain: Any) -> str:
    """A stable text for plain JSON data, for any int size (json.dumps refuses ints beyond
    sys.int_info's digit limit; hex has none) and any str (lone surrogates are escaped)."""
    return json.dumps(storable(plain), sort_keys=True, ensure_ascii=True, allow_nan=False)


def storable(plain: Any, depth: int = 0) -> Any:
    """Plain JSON data -> data that json.dumps and UTF-8 writers always take: ints too long for decimal
    text become {"$i": hex}, strs are made valid UTF-8 (lone surrogates replaced), non-finite floats
    their repr. For a verdict's record of an output; comparisons use the exact values."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    t = type(plain)
    if plain is None or t is bool:
        return plain
    if t is int:
        return plain if plain.bit_length() < 4000 else {"$i": hex(plain)}
    if t is float:
        return plain if math.isfinite(plain) else repr(plain)
    if t is str:
        return plain.encode("utf-8", "replace").decode("utf-8")
    if t is list:
        return [storable(x, depth + 1) for x in plain]
    if t is dict:
        return {storable(str(k), depth + 1): storable(v, depth + 1) for k, v in plain.items()}
    raise CodecError(f"cannot store a value of type {t.__name__}")


def to_plain(value: Any, depth: int = 0) -> Any:
    """Decoded value -> plain JSON data (tuples/sets as lists, non-str dict keys as strings), for comparing
    a program's output with a JSON test case's expected value. Ints stay exact, whatever their size."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    t = type(value)
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if t in (list, tuple):
        return [to_plain(x, depth + 1) for x in value]
    if t in (set, frozenset):
        return sorted((to_plain(x, depth + 1) for x in value), key=canonical)
    if t is dict:
        return {
            k if type(k) is str else canonical(to_plain(k, depth + 1)): to_plain(v, depth + 1)
            for k, v in value.items()
        }
    if t is bytes:
        return value.decode("utf-8", "replace")
    if t is complex:
        return [to_plain(value.real, depth + 1), to_plain(value.imag, depth + 1)]
    raise CodecError(f"cannot compare a value of type {t.__name__}")
