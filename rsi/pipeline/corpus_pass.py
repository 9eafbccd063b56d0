"""One pass of the corpus pipeline: for each family, seed chains → Ray Data stages (one per family operation)
→ Parquet tables of one iteration."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus.ids import content_id
from rsi.corpus.writer import write_manifest, write_rows
from rsi.pipeline.assemble import assemble_chain
from rsi.pipeline.steps import run_op
from rsi.tasks import get_family
from rsi.tasks.family import Check


@dataclass
class PassStats:
    rows: dict[str, int] = field(default_factory=dict)
    parse_rate: dict[str, float] = field(default_factory=dict)  # per step: share of outputs that parsed
    pairs_per_step: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # rows per step (performances and judgments)


def seed_chains(family: str, fam_cfg: FamilyConfig, run_seed: int, iteration: int) -> list[dict[str, Any]]:
    rows = []
    for k, seed in enumerate(fam_cfg.seeds):
        chain_id = content_id("chain", run_seed=run_seed, iteration=iteration, family=family, seed=seed, index=k)
        rows.append({"task_id": chain_id, "iteration": iteration, "family": family,
                     "state": json.dumps({"seed": seed, "items": [], "judgments": []})})
    return rows


def needs_sandbox(cfg: RsiConfig) -> bool:
    return any(isinstance(op, Check) and op.needs_sandbox for name in cfg.tasks for op in get_family(name).ops)


def family_dataset(cfg: RsiConfig, family: str, engine: Any, judge: Any, sandbox: Any, iteration: int) -> Any:
    """The family's chains as a lazy Ray Data dataset: one map_batches stage per operation, streaming."""
    import ray.data

    fam = get_family(family)
    fam_cfg = dataclasses.asdict(cfg.tasks[family])
    judging = dataclasses.asdict(cfg.judging)
    ds = ray.data.from_items(seed_chains(family, cfg.tasks[family], cfg.run.seed, iteration))
    for index in range(len(fam.ops)):
        # Small batches keep stages overlapping while each engine call still batches a few chains.
        ds = ds.map_batches(run_op, batch_size=2, num_cpus=0,
                            fn_kwargs={"family": fam, "op_index": index, "fam_cfg": fam_cfg,
                                       "judging": judging, "engine": engine, "judge": judge,
                                       "sandbox": sandbox})
    return ds


def run_corpus_pass(cfg: RsiConfig, engine: Any, iteration: int, out_dir: Path, *, model_version: int,
                    sandbox: Any = None, judge: Any = None) -> PassStats:
    tables: dict[str, list[dict[str, Any]]] = {"performances": [], "judgments": [], "preferences": []}
    for family in cfg.tasks:
        fam = get_family(family)
        for row in family_dataset(cfg, family, engine, judge or engine, sandbox, iteration).iter_rows():
            for name, rows in assemble_chain(row, fam).items():
                tables[name].extend(rows)

    stats = PassStats()
    for name, rows in tables.items():
        write_rows(rows, name, out_dir)
        stats.rows[name] = len(rows)
    for table in ("performances", "judgments"):
        by_step: dict[str, list[bool]] = {}
        for r in tables[table]:
            by_step.setdefault(r["step"], []).append(r["parse_status"] == "ok")
        for step, oks in by_step.items():
            stats.parse_rate[step] = sum(oks) / len(oks)
            stats.steps[step] = len(oks)
    stats.pairs_per_step = dict(Counter(r["step"] for r in tables["preferences"]))
    write_manifest(out_dir, iteration=iteration, model_version=model_version, parse_rate=stats.parse_rate,
                   pairs_per_step=stats.pairs_per_step, families=list(cfg.tasks))
    return stats
