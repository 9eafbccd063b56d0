"""One pass of the corpus pipeline: for each family, seed chains → Ray Data stages (one per family operation)
→ Parquet tables of one iteration."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus import counters
from rsi.corpus.ids import content_id
from rsi.corpus.stream import CorpusWriter, read_manifest
from rsi.judging.balance import PositionBalance, balance_pairs, restore_balances
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
        rows.append({"chain_id": chain_id, "iteration": iteration, "family": family,
                     "state": json.dumps({"seed": seed, "items": [], "judgments": []})})
    return rows


def needs_sandbox(cfg: RsiConfig) -> bool:
    return any(isinstance(op, Check) and op.needs_sandbox for name in cfg.tasks for op in get_family(name).ops)


def family_dataset(cfg: RsiConfig, family: str, engine: Any, judge: Any, sandbox: Any, iteration: int,
                   chains: list[dict[str, Any]] | None = None) -> Any:
    """The family's chains (default: all its seed chains) as a lazy Ray Data dataset: one map_batches stage
    per operation, streaming."""
    import ray.data

    fam = get_family(family)
    if chains is None:
        chains = seed_chains(family, cfg.tasks[family], cfg.run.seed, iteration)
    # One block per chain: Ray Data fuses the op stages into one task per block, so blocks are the unit of
    # parallelism; many chains in flight keep the engine's batches full while each chain waits on its steps.
    ds = ray.data.from_items(chains, override_num_blocks=max(1, len(chains)))
    bound = {"concurrency": cfg.loop.chains_in_flight} if cfg.loop.chains_in_flight > 0 else {}
    for index in range(len(fam.ops)):
        ds = ds.map_batches(run_op, batch_size=1, num_cpus=0, **bound,
                            fn_kwargs={"family": fam, "op_index": index, "fam_cfg": cfg.tasks[family],
                                       "judging": cfg.judging, "engine": engine, "judge": judge,
                                       "sandbox": sandbox})
    return ds


def run_corpus_pass(cfg: RsiConfig, engine: Any, iteration: int, out_dir: Path, *, model_version: int,
                    sandbox: Any = None, judge: Any = None) -> PassStats:
    """Stream every family's chains into the corpus writer, a part per few finished chains.

    With run.resume, chains committed before a crash are skipped and a finished iteration is not redone; the
    writer never writes a chain twice (rsi.corpus.stream)."""
    writer = CorpusWriter(out_dir, resume=cfg.run.resume, max_chains=cfg.run.commit_chains)
    if writer.complete:
        return _stats_from_manifest(read_manifest(out_dir) or {})
    done = writer.done_chain_ids()
    # Judgement pairs stay position-balanced across the pass, a resumed one included (rsi.judging.balance).
    def make_balance() -> PositionBalance:
        return PositionBalance(cfg.judging.position_balance, cfg.judging.balance_warmup)

    balances = restore_balances(counters.balance_admitted(writer.counters),
                                counters.balance_dropped(writer.counters), make_balance)
    streams = []
    for family in cfg.tasks:
        todo = [c for c in seed_chains(family, cfg.tasks[family], cfg.run.seed, iteration)
                if c["chain_id"] not in done]
        if todo:
            streams.append(family_dataset(cfg, family, engine, judge or engine, sandbox, iteration, todo))
    if streams:
        # All families stream at once, so the engines batch requests across them.
        stream = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
        for row in stream.iter_rows():
            fam = get_family(str(row["family"]))
            tables = assemble_chain(row, fam, cfg.judging)
            dropped: Counter = Counter()
            if cfg.judging.position_balance >= 0:
                tables["preferences"], dropped = balance_pairs(tables["preferences"], balances, make_balance)
            writer.add_chain(str(row["chain_id"]), tables, counters.dropped_for_balance(dropped))
    writer.close(iteration=iteration, model_version=model_version, families=list(cfg.tasks))
    return _stats_from_manifest(read_manifest(out_dir) or {})


def _stats_from_manifest(m: dict[str, Any]) -> PassStats:
    steps = counters.outputs_per_step(m.get("counters", {}))
    return PassStats(rows=dict(m.get("rows", {})), parse_rate=dict(m.get("parse_rate", {})),
                     pairs_per_step=dict(m.get("pairs_per_step", {})), steps=steps)
