"""Where a model build may write: a folder rsi built before (its stamp says so), an empty one, or a new one.
Anything else holds the user's files, which a build must never replace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ModelFolderError(ValueError):
    """The build's output folder holds something rsi did not build; the message names it."""


def check_build_folder(out: Path, stamp: str) -> None:
    """Fail unless `out` is absent, empty, or a folder with rsi's build stamp `stamp` in it."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ModelFolderError(f"--out {out}: is a file, not a folder")
    if (out / stamp).is_file() or not any(out.iterdir()):
        return
    raise ModelFolderError(f"--out {out}: holds files rsi did not build (no {stamp}); choose an empty or new "
                           "folder")


def read_stamp(path: Path) -> dict[str, Any] | None:
    """A build stamp's record; None when it is missing or unreadable (a build cut short): then the build runs
    again and replaces it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None
