"""`CorpusWriter`: the streaming, crash-safe writer of one iteration's corpus, exactly once across restarts.

Finished chains (a seed and everything grown from it) are buffered and flushed as one *part*: a Parquet file per
table holding the rows of those chains. A part becomes visible in two phases:

1. each table's file is written under a hidden pending name (`.part-NNNNN.parquet.pending`) and fsynced;
2. the commit record `_commits/part-NNNNN.json` (chain ids, file names, tallies: `rsi.corpus.counters`) is
   written atomically — this rename is the commit point;
3. the pending files are renamed to `part-NNNNN.parquet`.

Readers (`read_table`, `datasets`, the trainer) skip names starting with `.` or `_`, so they see a part whole
or not at all. On resume, a part with a commit record is rolled forward (pending files renamed), any file
without one is deleted, and `done_chain_ids()` tells the pass which chains to skip; `add_chain` ignores a
chain that is already committed, so no row is ever written twice. `close` writes the manifest last: its presence marks
the iteration complete.

Memory holds one part's buffer plus small tallies, whatever the number of rows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rsi.corpus import counters
from rsi.corpus.schema import TABLES
from rsi.corpus.text import clean_value

COMMITS = "_commits"
MANIFEST = "manifest.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a failed write names no file; the hidden temporary is never read
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def manifest_complete(iter_dir: Path | str) -> bool:
    """True when the iteration's manifest exists: every set of the pass was committed and the writer closed."""
    return (Path(iter_dir) / MANIFEST).is_file()


class CorpusWriter:
    """Append-only, part-per-flush writer of the three tables of one iteration folder."""

    def __init__(self, iter_dir: Path | str, *, resume: bool = False, max_rows: int = 2000, max_chains: int = 64,
                 max_seconds: float = 10.0) -> None:
        self.dir = Path(iter_dir)
        self.max_rows, self.max_chains, self.max_seconds = max_rows, max_chains, max_seconds
        self._buffer: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self._buffer_chains: list[str] = []
        self._buffer_tallies: Counter = Counter()
        self._done: set[str] = set()
        self.counters: Counter = Counter()
        self._next_part = 0
        self._last_flush = time.monotonic()
        if resume:
            self._recover()
        else:
            self._clear()
        (self.dir / COMMITS).mkdir(parents=True, exist_ok=True)

    # -- restart -------------------------------------------------------------------------------------------
    def _clear(self) -> None:
        """A fresh pass: drop what an earlier run left in this iteration folder (only the corpus' own names)."""
        for name in (*TABLES, COMMITS):
            shutil.rmtree(self.dir / name, ignore_errors=True)
        (self.dir / MANIFEST).unlink(missing_ok=True)

    def _recover(self) -> None:
        commits = self.dir / COMMITS
        keep: dict[str, set[str]] = {t: set() for t in TABLES}
        for rec_path in sorted(commits.glob("part-*.json")) if commits.is_dir() else []:
            rec = json.loads(rec_path.read_text())  # written atomically: whole or absent
            part = int(rec["part"])
            for table in rec["tables"]:
                final = self.dir / table / _part_name(part)
                pending = final.with_name(f".{final.name}.pending")
                if not final.exists():
                    if not pending.exists():
                        raise RuntimeError(f"corpus part {part} of {table} is committed but missing: {final}")
                    os.replace(pending, final)  # roll forward: the commit record is the truth
                    _fsync_dir(final.parent)
                keep[table].add(final.name)
            self._done.update(rec["chain_ids"])
            self.counters.update(rec["counters"])
            self._next_part = max(self._next_part, part + 1)
        # roll back: anything not named by a commit record was never committed
        for table in TABLES:
            tdir = self.dir / table
            for f in tdir.iterdir() if tdir.is_dir() else []:
                if f.name not in keep[table]:
                    f.unlink()
        for f in commits.glob(".*") if commits.is_dir() else []:
            f.unlink()
        (self.dir / f".{MANIFEST}.tmp").unlink(missing_ok=True)

    def done_chain_ids(self) -> set[str]:
        """Chains already committed (by this writer or a run before a crash): the pass skips them."""
        return set(self._done)

    @property
    def complete(self) -> bool:
        return manifest_complete(self.dir)

    # -- writing -------------------------------------------------------------------------------------------
    def add_chain(self, chain_id: str, tables: dict[str, list[dict[str, Any]]],
                  tallies: dict[str, int] | None = None) -> bool:
        """Buffer one finished chain's rows; flush when the buffer is full or old. False if the chain was
        already written (a retried chain after a restart), in which case nothing is added. `tallies` are
        committed with the chain's rows (what the caller left out of them, for instance)."""
        if chain_id in self._done or chain_id in self._buffer_chains:
            return False
        for name in tables:
            if name not in TABLES:
                raise KeyError(f"unknown corpus table {name!r}")
        self._buffer_tallies.update(tallies or {})
        for name, rows in tables.items():
            # The last line of defence: a string Parquet cannot encode would fail the whole part, and a seeded
            # resume would write the same text again.
            self._buffer[name].extend(clean_value(rows))
        self._buffer_chains.append(chain_id)
        if (len(self._buffer_chains) >= self.max_chains or sum(map(len, self._buffer.values())) >= self.max_rows
                or time.monotonic() - self._last_flush >= self.max_seconds):
            self.flush()
        return True

    def flush(self) -> None:
        """Commit the buffered chains as one part (no-op when the buffer is empty)."""
        if not self._buffer_chains:
            return
        part = self._next_part
        part_tallies: Counter = Counter(self._buffer_tallies)
        written: list[tuple[Path, Path]] = []
        target = self.dir
        try:
            for name, rows in self._buffer.items():
                if not rows:
                    continue
                table = pa.Table.from_pylist(rows, schema=TABLES[name])  # raises before anything is written
                final = self.dir / name / _part_name(part)
                pending = target = final.with_name(f".{final.name}.pending")
                final.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, pending)
                with open(pending, "rb") as f:
                    os.fsync(f.fileno())
                written.append((pending, final))
                counters.count_rows(part_tallies, name, rows)
            record = {"part": part, "chain_ids": self._buffer_chains, "tables": [f.parent.name for _, f in written],
                      "counters": dict(part_tallies)}
            _atomic_json(self.dir / COMMITS / f"part-{part:05d}.json", record)  # the commit point
        except OSError as e:
            # Arrow's errors name no file. Nothing of this part is visible (pending names are hidden, the commit
            # record absent) and the buffer is kept: a resumed pass rolls the part back and redoes its chains.
            why = f"corpus part {part} not written ({e.strerror or e})"
            raise OSError(e.errno, why, e.filename or str(target)) from e
        for pending, final in written:
            os.replace(pending, final)
        for d in {final.parent for _, final in written}:
            _fsync_dir(d)
        self._done.update(self._buffer_chains)
        self.counters.update(part_tallies)
        self._next_part += 1
        self._buffer = {t: [] for t in TABLES}
        self._buffer_chains = []
        self._buffer_tallies = Counter()
        self._last_flush = time.monotonic()

    def rows(self) -> dict[str, int]:
        """Committed rows per table."""
        return counters.rows_per_table(self.counters, tuple(TABLES))

    def close(self, **fields: Any) -> Path:
        """Flush, then write the manifest last (row counts from the commit records, no table re-read)."""
        self.flush()
        c = self.counters
        manifest = {"written_at": time.time(), "rows": self.rows(), "parts": self._next_part,
                    "chains": len(self._done), "parse_rate": counters.parse_rate(c),
                    "pairs_per_step": counters.pairs_per_step(c), "position_bias": counters.position_bias(c),
                    "mean_length": counters.mean_lengths(c), "balance_dropped": counters.balance_dropped(c),
                    "overlap_dropped": counters.overlap_dropped(c),
                    "counters": dict(c), **fields}
        path = self.dir / MANIFEST
        _atomic_json(path, manifest)
        return path


def read_manifest(iter_dir: Path | str) -> dict[str, Any] | None:
    """The iteration's manifest, None before it is written; a damaged one (cut short, not an object) raises
    InputFileError naming it, since a resume must not guess what the iteration holds."""
    from rsi.input_files import read_json

    path = Path(iter_dir) / MANIFEST
    return read_json(path, dict) if path.exists() else None


def read_table(out_dir: Path | str, table_name: str, columns: list[str] | None = None) -> pa.Table:
    """A table of one iteration folder; hidden and underscore names (uncommitted parts) are never read.
    A table no chain produced rows for reads as empty with its schema."""
    path = Path(out_dir) / table_name
    schema = TABLES[table_name]
    if not path.is_dir() or not any(p.suffix == ".parquet" and not p.name.startswith((".", "_"))
                                     for p in path.iterdir()):
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return pq.ParquetDataset(path).read(columns=columns)


def mark_manifest(iter_dir: Path | str, **fields: Any) -> None:
    """Add fields to a complete iteration's manifest (the gate's decision on the model trained from it)."""
    manifest = read_manifest(iter_dir)
    if manifest is None:
        raise FileNotFoundError(f"{iter_dir}: no manifest (the iteration's corpus is not complete)")
    _atomic_json(Path(iter_dir) / MANIFEST, manifest | fields)
