"""Export the preferences of a run as a DPO-ready dataset, one file at a time (bounded memory).

`trl`: Parquet files with TRL's conversational columns (prompt, chosen, rejected) plus margin and weight;
`datasets.load_dataset("parquet", data_files=OUT + "/*.parquet")` loads it and DPOTrainer takes it as is.
`jsonl`: the same rows as JSON lines.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsi.corpus.stats import checked_table, iteration_dirs
from rsi.input_files import check_out_dir

COLUMNS = ["prompt", "chosen", "rejected", "margin", "weight", "level", "step", "id"]


def _files(iter_dir: Path) -> list[Path]:
    d = iter_dir / "preferences"
    return sorted(f for f in d.glob("*.parquet") if not f.name.startswith((".", "_"))) if d.is_dir() else []


def export_preferences(path: Path | str, out: Path | str, fmt: str = "trl", *, min_margin: float = 0.0,
                       levels: list[int] | None = None) -> int:
    """Write every iteration's preferences under `path` to `out`; returns the number of rows written."""
    if fmt not in ("trl", "jsonl"):
        raise ValueError(f"unknown export format {fmt!r} (trl | jsonl)")
    iter_dirs = iteration_dirs(path)
    out = check_out_dir(out, "OUT")
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    seen: set[str] = set()  # a pair id appears once even if two iterations produced it
    for iter_dir in iter_dirs:
        for f in _files(iter_dir):
            table = checked_table(partial(pq.read_table, f, columns=COLUMNS), f, "preferences", COLUMNS)
            mask = pc.greater_equal(table.column("margin"), min_margin)
            if levels:
                mask = pc.and_(mask, pc.is_in(table.column("level"), pa.array(levels, pa.int8())))
            table = table.filter(mask)
            ids = table.column("id").to_pylist()
            keep = [i not in seen for i in ids]
            seen.update(ids)
            table = table.filter(pa.array(keep, pa.bool_()))
            if table.num_rows == 0:
                continue
            target = out / f"{iter_dir.name}-{f.stem}.{'parquet' if fmt == 'trl' else 'jsonl'}"
            tmp = target.with_name(f".{target.name}.tmp")
            if fmt == "trl":
                pq.write_table(table, tmp)
            else:
                with open(tmp, "w", encoding="utf-8") as fh:
                    for row in table.to_pylist():
                        fh.write(json.dumps(row) + "\n")
            os.replace(tmp, target)
            written += table.num_rows
    return written
