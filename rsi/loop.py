"""The whole run on one screen: preflight → cluster → engine → per iteration: corpus pass → DPO → hot-swap."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rsi.config import ClusterConfig, RsiConfig
from rsi.corpus.resume import resume_point
from rsi.inference import EngineSpec, PoolConfig, start_pool
from rsi.pipeline.corpus_pass import PassStats, needs_sandbox, run_corpus_pass
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
    engine: Any  # the live policy pool (router actor, engine API), still serving the last weights
    judge: Any = None  # the judge pool: the policy pool itself unless backend.judge_replicas > 0


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
                      seed=cfg.run.seed, engine_kwargs=dict(b.engine_kwargs),
                      sleep_mode=b.colocate)


def pool_config(cfg: RsiConfig, name: str) -> PoolConfig:
    b = cfg.backend
    return PoolConfig(replicas=b.judge_replicas if name == "judge" else b.replicas, max_in_flight=b.max_in_flight,
                      max_restarts=b.max_restarts, num_cpus=b.num_cpus, num_gpus=b.num_gpus, name=name)


def start_sandbox(cfg: RsiConfig) -> Any:
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.pool import SandboxPool

    s = cfg.sandbox
    limits = Limits(timeout_s=s.timeout_s, memory_mb=s.memory_mb)
    return SandboxPool(SandboxConfig(launcher=s.launcher, slots=s.slots, canary=s.canary, limits=limits),
                       num_workers=s.workers, num_cpus_per_worker=0)


def run_loop(cfg: RsiConfig, console: Console | None = None) -> RunResult:
    import ray

    # Piped into a log, rich would wrap tables at 80 columns; a fixed width keeps them readable there.
    console = console or (Console() if sys.stdout.isatty() else Console(width=130))
    model_path = preflight(cfg)  # before Ray: bad keys, paths and models fail here
    run_dir = Path(cfg.run.dir)
    init_ray(cfg.cluster)
    with console.status(f"starting {cfg.backend.name} pools on {model_path}"):
        # Long-lived replica pools with the engine's API; the stages call them as they would one engine.
        engine = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "policy"))
        judge = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "judge")) \
            if cfg.backend.judge_replicas else engine
    pools = [engine] if judge is engine else [engine, judge]

    sandbox = start_sandbox(cfg) if needs_sandbox(cfg) else None

    weights, summaries, start = model_path, [], 0
    if cfg.run.resume:
        # Finished iterations (manifest and checkpoint written) are skipped; the pools go back to the last
        # checkpoint under its version number, so later rows carry the versions an uninterrupted run would.
        point = resume_point(run_dir, cfg.loop.iterations)
        start = point.start
        if point.checkpoint:
            ray.get([p.update_weights.remote(point.checkpoint, point.version) for p in pools])
            weights = point.checkpoint
    for iteration in range(start, cfg.loop.iterations):
        version = ray.get(engine.version.remote())
        corpus_dir = run_dir / "corpus" / f"iter_{iteration:03d}"
        console.rule(f"iteration {iteration} · policy v{version}")
        stats = run_corpus_pass(cfg, engine, iteration, corpus_dir, model_version=version, sandbox=sandbox,
                                judge=judge)
        console.print(step_table(stats))

        ckpt_dir = run_dir / "checkpoints" / f"v{version + 1}"
        if cfg.backend.colocate:  # free the GPUs for the trainer (a no-op where vLLM cannot sleep)
            ray.get([p.sleep.remote() for p in pools])
        with console.status("DPO under Ray Train"):
            result = train_dpo(str(corpus_dir / "preferences"), weights, str(ckpt_dir), cfg.train)
        if cfg.backend.colocate:
            ray.get([p.wake_up.remote() for p in pools])

        t0 = time.perf_counter()
        # Every pool drains, swaps its replicas in place and resumes; self-judging keeps one version throughout.
        new_version = max(ray.get([p.update_weights.remote(result.checkpoint, version + 1) for p in pools]))
        swap_seconds = time.perf_counter() - t0
        weights = result.checkpoint

        parsed = [stats.parse_rate[s] for s in stats.parse_rate]
        summaries.append(IterationSummary(
            iteration=iteration, model_version=version, performances=stats.rows["performances"],
            judgments=stats.rows["judgments"], preferences=stats.rows["preferences"],
            parse_rate=sum(parsed) / len(parsed) if parsed else 0.0, dpo_loss=result.loss,
            train_seconds=result.seconds, swap_seconds=swap_seconds, new_version=new_version,
            checkpoint=result.checkpoint, engine_pid=ray.get(engine.health.remote())["pids"][0],
        ))
        console.print(summary_table(summaries))
    write_summary(run_dir, summaries)
    return RunResult(summaries, engine, judge)


def step_table(stats: PassStats) -> Table:
    table = Table(title="corpus pass · per step")
    for col in ("step", "rows", "parse rate", "pairs"):
        table.add_column(col, justify="right")
    for step, rows in stats.steps.items():
        table.add_row(step, str(rows), f"{stats.parse_rate[step]:.0%}", str(stats.pairs_per_step.get(step, 0)))
    return table


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
