"""The whole run on one screen: preflight → cluster → engine → per iteration: corpus pass → DPO → hot-swap."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rsi.config import ClusterConfig, RsiConfig
from rsi.inference import EngineSpec, start_engine
from rsi.pipeline.corpus_pass import run_corpus_pass
from rsi.preflight import preflight
from rsi.train import train_dpo


@dataclass
class IterationSummary:
    iteration: int
    model_version: int
    performances: int
    judgments: int
    preferences: int
    parse_rate: float
    dpo_loss: float | None
    train_seconds: float
    swap_seconds: float
    new_version: int
    checkpoint: str
    engine_pid: int  # the same process every iteration: weights change under a live engine


@dataclass
class RunResult:
    summaries: list[IterationSummary]
    engine: Any  # the live policy/judge actor, still serving the last weights


def init_ray(cluster: ClusterConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if cluster.address:
        ray.init(address=cluster.address)
    else:
        # Logical CPUs: the engine idles while the trainer works, so a small box may oversubscribe safely.
        ray.init(num_cpus=cluster.num_cpus or max(4, os.cpu_count() or 1))


def engine_spec(cfg: RsiConfig, model_path: str) -> EngineSpec:
    b = cfg.backend
    return EngineSpec(model_path=model_path, backend=b.name, dtype=cfg.model.dtype,
                      max_model_len=cfg.model.max_model_len, threads=b.threads, kv_cache_gb=b.kv_cache_gb,
                      tensor_parallel_size=b.tensor_parallel_size, enforce_eager=b.enforce_eager,
                      seed=cfg.run.seed, engine_kwargs=dict(b.engine_kwargs))


def run_loop(cfg: RsiConfig, console: Console | None = None) -> RunResult:
    import ray

    console = console or Console()
    model_path = preflight(cfg)  # before Ray: bad keys, paths and models fail here
    run_dir = Path(cfg.run.dir)
    init_ray(cfg.cluster)
    with console.status(f"starting {cfg.backend.name} engine on {model_path}"):
        engine = start_engine(engine_spec(cfg, model_path), num_cpus=cfg.backend.num_cpus,
                              num_gpus=cfg.backend.num_gpus)

    weights, summaries = model_path, []
    for iteration in range(cfg.loop.iterations):
        version = ray.get(engine.version.remote())
        corpus_dir = run_dir / "corpus" / f"iter_{iteration:03d}"
        console.rule(f"iteration {iteration} · policy v{version}")
        stats = run_corpus_pass(cfg, engine, iteration, corpus_dir, model_version=version)

        ckpt_dir = run_dir / "checkpoints" / f"v{version + 1}"
        with console.status("DPO under Ray Train"):
            result = train_dpo(str(corpus_dir / "preferences"), weights, str(ckpt_dir), cfg.train)

        t0 = time.perf_counter()
        new_version = ray.get(engine.update_weights.remote(result.checkpoint))  # same actor, no restart
        swap_seconds = time.perf_counter() - t0
        weights = result.checkpoint

        parsed = [stats.parse_rate[s] for s in stats.parse_rate]
        summaries.append(IterationSummary(
            iteration=iteration, model_version=version, performances=stats.rows["performances"],
            judgments=stats.rows["judgments"], preferences=stats.rows["preferences"],
            parse_rate=sum(parsed) / len(parsed) if parsed else 0.0, dpo_loss=result.loss,
            train_seconds=result.seconds, swap_seconds=swap_seconds, new_version=new_version,
            checkpoint=result.checkpoint, engine_pid=ray.get(engine.health.remote())["pid"],
        ))
        console.print(summary_table(summaries))
    write_summary(run_dir, summaries)
    return RunResult(summaries, engine)


def summary_table(summaries: list[IterationSummary]) -> Table:
    table = Table(title="rsi · iterations")
    for col in ("iter", "version", "perf rows", "judgments", "pairs", "parse rate", "DPO loss", "train s",
                "swap s", "→ version"):
        table.add_column(col, justify="right")
    for s in summaries:
        table.add_row(str(s.iteration), f"v{s.model_version}", str(s.performances), str(s.judgments),
                      str(s.preferences), f"{s.parse_rate:.0%}",
                      "-" if s.dpo_loss is None else f"{s.dpo_loss:.4f}", f"{s.train_seconds:.1f}",
                      f"{s.swap_seconds:.2f}", f"v{s.new_version}")
    return table


def write_summary(run_dir: Path, summaries: list[IterationSummary]) -> None:
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps([asdict(s) for s in summaries], indent=2))
