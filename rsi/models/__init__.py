"""Model presets: where each named model's HF folder comes from (built offline, cached, or given)."""

from __future__ import annotations

from pathlib import Path

from rsi.models.smollm2 import cache_root, ensure_smollm2
from rsi.models.tiny import build_tiny_model


def resolve_model_path(name: str, path: str | None) -> str:
    """The folder (or HF id) an engine loads for preset `name`; an explicit `path` always wins."""
    if path:
        return str(Path(path).expanduser()) if Path(path).expanduser().exists() else path
    if name == "tiny":
        return str(build_tiny_model(cache_root() / "models" / "tiny"))
    if name == "smollm2-135m":
        return str(ensure_smollm2())
    raise ValueError(f"model.name={name!r} needs model.path (an HF id or a folder)")


__all__ = ["build_tiny_model", "ensure_smollm2", "resolve_model_path"]
