"""Atomic Parquet writes: a reader sees a whole file or none, and the manifest is written last.

Whole-table writes of small tables; the streaming, resumable writer of a pass is `rsi.corpus.stream`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rsi.corpus.schema import TABLES


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(table: pa.Table, path: Path) -> None:
    """temp file → fsync → rename → fsync the folder: a crash leaves the old state or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_rows(rows: list[dict[str, Any]], table_name: str, out_dir: Path, part: int = 0) -> Path:
    schema = TABLES[table_name]
    table = pa.Table.from_pylist(rows, schema=schema)  # raises on a field that does not fit the schema
    path = out_dir / table_name / f"part-{part:05d}.parquet"
    write_atomic(table, path)
    return path


def write_manifest(out_dir: Path, **fields: Any) -> Path:
    counts = {name: pq.ParquetDataset(out_dir / name).read().num_rows if (out_dir / name).exists() else 0
              for name in TABLES}
    manifest = {"written_at": time.time(), "rows": counts, **fields}
    path = out_dir / "manifest.json"
    tmp = path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_table(out_dir: Path | str, table_name: str, columns: list[str] | None = None) -> pa.Table:
    """A table of one iteration folder; hidden and underscore names (uncommitted parts) are never read.
    A table no set produced rows for reads as empty with its schema."""
    path = Path(out_dir) / table_name
    schema = TABLES[table_name]
    if not path.is_dir() or not any(p.suffix == ".parquet" and not p.name.startswith((".", "_"))
                                     for p in path.iterdir()):
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return pq.ParquetDataset(path).read(columns=columns)
