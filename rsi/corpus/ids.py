"""Content-hash ids: a row's id is a hash of what produced it, so a retried call or a rerun writes the same id."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_id(kind: str, **inputs: Any) -> str:
    payload = json.dumps({"kind": kind, **inputs}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def derived_seed(*parts: Any) -> int:
    """A 31-bit sampling seed derived from ids: deterministic per row, different across rows."""
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
