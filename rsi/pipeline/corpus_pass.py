"""One pass of the corpus pipeline: seed sets → Ray Data stages → Parquet tables of one iteration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsi.config import RsiConfig
from rsi.corpus.ids import content_id
from rsi.corpus.writer import write_manifest, write_rows
from rsi.pipeline.assemble import assemble_set
from rsi.pipeline.stages import generate_candidates, meta_rank, rank_candidates


@dataclass
class PassStats:
    rows: dict[str, int] = field(default_factory=dict)
    parse_rate: dict[str, float] = field(default_factory=dict)  # per step: share of outputs that parsed
    pairs_per_step: dict[str, int] = field(default_factory=dict)


def seed_sets(cfg: RsiConfig, iteration: int) -> list[dict[str, Any]]:
    family = cfg.tasks.family
    return [{"task_id": content_id("set", run_seed=cfg.run.seed, iteration=iteration, domain=d, family=family),
             "iteration": iteration, "domain": d}
            for d in cfg.tasks.domains]


def run_corpus_pass(cfg: RsiConfig, engine: Any, iteration: int, out_dir: Path, *,
                    model_version: int) -> PassStats:
    import ray.data

    j = cfg.judging
    # Small batches keep the stages overlapping (streaming) while each engine call still batches a few sets.
    batch = 2
    ds = (
        ray.data.from_items(seed_sets(cfg, iteration))
        .map_batches(generate_candidates, batch_size=batch, num_cpus=0,
                     fn_kwargs={"engine": engine, "samples": cfg.tasks.samples_per_domain,
                                "max_tokens": cfg.tasks.max_tokens, "temperature": cfg.tasks.temperature})
        .map_batches(rank_candidates, batch_size=batch, num_cpus=0,
                     fn_kwargs={"engine": engine, "rankings": j.rankings_per_set, "max_tokens": j.max_tokens,
                                "temperature": j.temperature, "rationale_chars": j.rationale_chars})
        .map_batches(meta_rank, batch_size=batch, num_cpus=0,
                     fn_kwargs={"engine": engine, "rankings": j.meta_rankings_per_set,
                                "max_tokens": j.max_tokens, "temperature": j.temperature,
                                "rationale_chars": j.rationale_chars})
    )
    tables: dict[str, list[dict[str, Any]]] = {"performances": [], "judgments": [], "preferences": []}
    for row in ds.iter_rows():
        for name, rows in assemble_set(row).items():
            tables[name].extend(rows)

    stats = PassStats()
    for name, rows in tables.items():
        write_rows(rows, name, out_dir)
        stats.rows[name] = len(rows)
    for table in ("performances", "judgments"):
        for step in sorted({r["step"] for r in tables[table]}):
            of_step = [r for r in tables[table] if r["step"] == step]
            stats.parse_rate[step] = sum(r["parse_status"] == "ok" for r in of_step) / len(of_step)
    for r in tables["preferences"]:
        stats.pairs_per_step[r["step"]] = stats.pairs_per_step.get(r["step"], 0) + 1
    write_manifest(out_dir, iteration=iteration, model_version=model_version, parse_rate=stats.parse_rate)
    return stats
