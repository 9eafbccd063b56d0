"""`CorpusWriter`: the streaming, crash-safe writer of one iteration's corpus, exactly once across restarts.

Finished candidate sets are buffered and flushed as one *part*: a Parquet file per table holding the rows of
those sets. A part becomes visible in two phases:

1. each table's file is written under a hidden pending name (`.part-NNNNN.parquet.pending`) and fsynced;
2. the commit record `_commits/part-NNNNN.json` (task ids, file names, row counters) is written atomically —
   this rename is the commit point;
3. the pending files are renamed to `part-NNNNN.parquet`.

Readers (`read_table`, `datasets`, the trainer) skip names starting with `.` or `_`, so they see a part whole
or not at all. On resume, a part with a commit record is rolled forward (pending files renamed), any file
without one is deleted, and `done_task_ids()` tells the pass which sets to skip; `add_set` ignores a set that
is already committed, so no row is ever written twice. `close` writes the manifest last: its presence marks
the iteration complete.

Memory holds one part's buffer plus small counters, whatever the number of rows.
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

from rsi.corpus.schema import TABLES
from rsi.corpus.writer import _fsync_dir

COMMITS = "_commits"
MANIFEST = "manifest.json"


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


def _count_rows(counters: Counter, table: str, rows: list[dict[str, Any]]) -> None:
    """Counters the manifest and `PassStats` report, kept per part so a resume restores them exactly."""
    for r in rows:
        key = f"{r.get('family')}/{r.get('step')}"
        counters[f"rows|{table}|{key}|{r.get('level', 0)}"] += 1
        if table in ("performances", "judgments"):
            counters[f"parsed|{r.get('step')}"] += r.get("parse_status") == "ok"
            counters[f"outputs|{r.get('step')}"] += 1
        if table == "judgments" and r.get("ranking") and r.get("presented_order"):
            key = f"{r.get('step')}/{r.get('level')}"
            counters[f"first|{key}"] += r["ranking"][0] == r["presented_order"][0]
            counters[f"valid|{key}"] += 1
            counters[f"chance|{key}"] += 1.0 / len(r["ranking"])
        if table == "preferences":
            counters[f"pairs|{r.get('step')}"] += 1
            if r.get("chosen_first_shown") is not None:
                counters[f"balance|{r.get('step')}|{r['chosen_first_shown']}"] += 1
            counters["len_chosen"] += sum(len(m.get("content") or "") for m in r.get("chosen") or [])
            counters["len_rejected"] += sum(len(m.get("content") or "") for m in r.get("rejected") or [])


def manifest_complete(iter_dir: Path | str) -> bool:
    """True when the iteration's manifest exists: every set of the pass was committed and the writer closed."""
    return (Path(iter_dir) / MANIFEST).is_file()


class CorpusWriter:
    """Append-only, part-per-flush writer of the three tables of one iteration folder."""

    def __init__(self, iter_dir: Path | str, *, resume: bool = False, max_rows: int = 2000, max_sets: int = 64,
                 max_seconds: float = 10.0) -> None:
        self.dir = Path(iter_dir)
        self.max_rows, self.max_sets, self.max_seconds = max_rows, max_sets, max_seconds
        self._buffer: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self._buffer_sets: list[str] = []
        self._buffer_counters: Counter = Counter()
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
            self._done.update(rec["task_ids"])
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

    def done_task_ids(self) -> set[str]:
        """Sets already committed (by this writer or a run before a crash): the pass skips them."""
        return set(self._done)

    @property
    def complete(self) -> bool:
        return manifest_complete(self.dir)

    # -- writing -------------------------------------------------------------------------------------------
    def add_set(self, task_id: str, tables: dict[str, list[dict[str, Any]]],
                counters: dict[str, int] | None = None) -> bool:
        """Buffer one finished candidate set's rows; flush when the buffer is full or old. False if the set was
        already written (a retried set after a restart), in which case nothing is added. `counters` are
        committed with the set's rows (what the caller left out of them, for instance)."""
        if task_id in self._done or task_id in self._buffer_sets:
            return False
        self._buffer_counters.update(counters or {})
        for name, rows in tables.items():
            if name not in TABLES:
                raise KeyError(f"unknown corpus table {name!r}")
            self._buffer[name].extend(rows)
        self._buffer_sets.append(task_id)
        if (len(self._buffer_sets) >= self.max_sets or sum(map(len, self._buffer.values())) >= self.max_rows
                or time.monotonic() - self._last_flush >= self.max_seconds):
            self.flush()
        return True

    def flush(self) -> None:
        """Commit the buffered sets as one part (no-op when the buffer is empty)."""
        if not self._buffer_sets:
            return
        part = self._next_part
        counters: Counter = Counter(self._buffer_counters)
        written: list[tuple[Path, Path]] = []
        for name, rows in self._buffer.items():
            if not rows:
                continue
            table = pa.Table.from_pylist(rows, schema=TABLES[name])  # raises before anything is written
            final = self.dir / name / _part_name(part)
            pending = final.with_name(f".{final.name}.pending")
            final.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, pending)
            with open(pending, "rb") as f:
                os.fsync(f.fileno())
            written.append((pending, final))
            _count_rows(counters, name, rows)
        record = {"part": part, "task_ids": self._buffer_sets, "tables": [f.parent.name for _, f in written],
                  "counters": dict(counters)}
        _atomic_json(self.dir / COMMITS / f"part-{part:05d}.json", record)  # the commit point
        for pending, final in written:
            os.replace(pending, final)
        for d in {final.parent for _, final in written}:
            _fsync_dir(d)
        self._done.update(self._buffer_sets)
        self.counters.update(counters)
        self._next_part += 1
        self._buffer = {t: [] for t in TABLES}
        self._buffer_sets = []
        self._buffer_counters = Counter()
        self._last_flush = time.monotonic()

    def rows(self) -> dict[str, int]:
        """Committed rows per table."""
        out = dict.fromkeys(TABLES, 0)
        for key, v in self.counters.items():
            if key.startswith("rows|"):
                out[key.split("|")[1]] += v
        return out

    def parse_rate(self) -> dict[str, float]:
        return {k.split("|", 1)[1]: self.counters[f"parsed|{k.split('|', 1)[1]}"] / v
                for k, v in self.counters.items() if k.startswith("outputs|") and v}

    def pairs_per_step(self) -> dict[str, int]:
        return {k.split("|", 1)[1]: v for k, v in self.counters.items() if k.startswith("pairs|")}

    def position_bias(self) -> dict[str, dict[str, float]]:
        """Per step/level: share of valid judgments whose top pick was shown first, against chance."""
        out = {}
        for k, v in self.counters.items():
            if k.startswith("valid|") and v:
                key = k.split("|", 1)[1]
                out[key] = {"first_shown_wins": self.counters[f"first|{key}"] / v,
                            "chance": self.counters[f"chance|{key}"] / v, "judgments": v}
        return out

    def balance_dropped(self) -> dict[str, int]:
        """Judgement pairs per step left out to keep the chosen rankings' first picks position-balanced."""
        return {k.split("|", 1)[1]: int(v) for k, v in self.counters.items() if k.startswith("balance_dropped|")}

    def mean_lengths(self) -> dict[str, float]:
        """Mean characters of chosen and rejected texts over the committed pairs."""
        pairs = sum(self.pairs_per_step().values())
        return {"chosen": self.counters["len_chosen"] / pairs if pairs else 0.0,
                "rejected": self.counters["len_rejected"] / pairs if pairs else 0.0}

    def close(self, **fields: Any) -> Path:
        """Flush, then write the manifest last (row counts from the commit records, no table re-read)."""
        self.flush()
        manifest = {"written_at": time.time(), "rows": self.rows(), "parts": self._next_part,
                    "sets": len(self._done), "parse_rate": self.parse_rate(),
                    "pairs_per_step": self.pairs_per_step(), "position_bias": self.position_bias(),
                    "mean_length": self.mean_lengths(), "balance_dropped": self.balance_dropped(),
                    "counters": dict(self.counters), **fields}
        path = self.dir / MANIFEST
        _atomic_json(path, manifest)
        return path


def read_manifest(iter_dir: Path | str) -> dict[str, Any] | None:
    path = Path(iter_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None
