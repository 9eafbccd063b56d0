"""The preference pairs as the trainer takes them: loaded, checked, reduced to the columns DPO reads.

Checking happens on the driver so a bad corpus fails with a plain ValueError before Ray Train starts workers;
the reduced table then travels to the workers through the object store, so no worker needs the corpus path.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
WEIGHT_COLUMN = "weight"  # the name the worker reads; the corpus column is renamed to it
ID_COLUMN = "id"  # the corpus' content-hash id of a pair


def load_preferences(path: str | Path) -> datasets.Dataset:
    """Load a preferences folder (or one Parquet file) exactly as `datasets.load_dataset("parquet")` does.

    Files with no rows are left out: the corpus may write empty partitions, and `datasets` fails on them
    ("BatchSize must be greater than 0"); the rows loaded are the same.
    """
    import datasets
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet") if not f.name.startswith((".", "_")))
    elif p.is_file():
        files = [str(p)]
    else:
        raise ValueError(f"preferences not found: {p}")
    if not files:
        raise ValueError(f"no Parquet files under {p}: the preferences corpus is empty")
    files = [f for f in files if pq.ParquetFile(f).metadata.num_rows > 0]
    if not files:
        raise ValueError(f"the Parquet files under {p} hold no rows: the preferences corpus is empty")
    return datasets.load_dataset("parquet", data_files=files, split="train")


def prepare_preferences(dataset: datasets.Dataset, weight_column: str | None) -> tuple[pa.Table, bool]:
    """Check `dataset`, keep prompt/chosen/rejected (+ weight); return the table and whether it is weighted.

    Extra corpus columns (margin, level, ids) are dropped: TRL would drop them anyway, and a column whose type
    the tokenising `map` cannot round-trip must not fail a run.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"preferences lack column(s) {missing}; have {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError("preferences are empty: nothing to train on")
    _check_conversational(dataset[0])

    keep = list(REQUIRED_COLUMNS)
    weighted = weight_column is not None and weight_column in dataset.column_names
    if weighted:
        weights = dataset[weight_column]
        bad = [w for w in weights if w is None or not math.isfinite(w) or w < 0]
        if bad:
            raise ValueError(f"column {weight_column!r} holds {len(bad)} weight(s) that are null, infinite "
                             f"or negative, e.g. {bad[0]!r}")
        if sum(weights) <= 0:
            raise ValueError(f"column {weight_column!r} sums to 0: no pair would ever be sampled")
        keep.append(weight_column)
    reduced = dataset.select_columns(keep).flatten_indices()
    if weighted and weight_column != WEIGHT_COLUMN:
        reduced = reduced.rename_column(weight_column, WEIGHT_COLUMN)
    return reduced.data.table, weighted


def pair_keys(dataset: datasets.Dataset) -> list[str]:
    """What identifies each pair whatever the row order: the corpus' id, else (a dataset of one's own without
    ids) a hash of the pair's prompt, chosen and rejected messages."""
    if ID_COLUMN in dataset.column_names:
        return [str(i) for i in dataset[ID_COLUMN]]
    return [hashlib.sha256(json.dumps([row[c] for c in REQUIRED_COLUMNS], sort_keys=True).encode()).hexdigest()
            for row in dataset.select_columns(list(REQUIRED_COLUMNS))]


def _draw(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"label_noise:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def add_label_noise(table: pa.Table, keys: Sequence[str], noise: float, seed: int) -> tuple[pa.Table, int]:
    """`table` (prepare_preferences') with chosen and rejected swapped in the pairs whose draw from (seed, key)
    falls below `noise` (`train.label_noise`), and how many that was; `keys` (pair_keys) are in row order.
    Each pair's draw depends on its own key and the seed alone, so the same seed swaps the same pairs in any row
    order or subset, and a larger share swaps every pair a smaller one did."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(keys) != table.num_rows:
        raise ValueError(f"{len(keys)} pair keys for {table.num_rows} pairs")
    if noise <= 0:
        return table, 0
    swap = pa.array([_draw(seed, key) < noise for key in keys], pa.bool_())
    swapped = int(pc.sum(swap).as_py() or 0)
    if not swapped:
        return table, 0
    chosen, rejected = table.column("chosen"), table.column("rejected")
    table = table.set_column(table.column_names.index("chosen"), "chosen", pc.if_else(swap, rejected, chosen))
    table = table.set_column(table.column_names.index("rejected"), "rejected", pc.if_else(swap, chosen, rejected))
    return table, swapped


def table_to_dataset(table: pa.Table) -> datasets.Dataset:
    """Rebuild an in-memory `datasets.Dataset` from the table the driver shipped."""
    import datasets
    from datasets.table import InMemoryTable

    return datasets.Dataset(InMemoryTable(table))


def _check_conversational(row: dict) -> None:
    """DPOTrainer takes plain strings too, but the corpus contract is chat messages: catch a mix-up."""
    for col in REQUIRED_COLUMNS:
        value = row[col]
        if not isinstance(value, list) or not value or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in value):
            raise ValueError(f"preferences column {col!r} must hold a list of {{role, content}} messages; "
                             f"first row has {value!r:.200}")
    for col in ("chosen", "rejected"):
        if row[col][-1]["role"] != "assistant":
            raise ValueError(f"preferences column {col!r} must end with an assistant message")


def draw_pairs(dataset: datasets.Dataset, draws: int, seed: int) -> datasets.Dataset:
    """The pairs a run of `draws` samples will train on, drawn up front when that is fewer than the corpus holds
    (`train.max_steps`): by weight with replacement as the weighted sampler draws, else a random subset as one
    shuffled epoch's first `draws`. The reference pass then scores only those (on SmolLM2 it scored 355 pairs in
    5.5 minutes for a run that drew 128). The weight column goes: the drawn sample already follows it."""
    import torch

    if draws >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    if WEIGHT_COLUMN in dataset.column_names:
        weights = torch.tensor(dataset[WEIGHT_COLUMN], dtype=torch.double)
        picked = torch.multinomial(weights, draws, replacement=True, generator=generator)
        dataset = dataset.remove_columns(WEIGHT_COLUMN)
    else:
        picked = torch.randperm(len(dataset), generator=generator)[:draws]
    return dataset.select(picked.tolist())
