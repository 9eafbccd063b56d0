"""The whole run on one screen: preflight → cluster → pools → evaluate v0 → per iteration: corpus pass → DPO →
hot-swap → evaluate the candidate → keep it, or swap back to the kept weights."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from rsi.cluster_env import check_shared_storage, init_ray
from rsi.config import RsiConfig
from rsi.console import (
    ChainProgress,
    quiet_ray_data,
    ray_logs_link,
    start_board,
    third_party_logs,
    watch_dpo,
)
from rsi.corpus.stream import mark_manifest
from rsi.evals.gate import decide, paired
from rsi.history import IterationSummary, checkpoint_dir, eval_dir, load_history, record_iteration
from rsi.inference import EngineSpec, PoolConfig, start_pool
from rsi.pipeline.corpus_pass import needs_sandbox, run_corpus_pass
from rsi.preflight import preflight
from rsi.tables import step_table, summary_table
from rsi.tracking import Tracker
from rsi.train import train_dpo

Items = dict[str, list[dict[str, Any]]]


@dataclass
class RunResult:
    summaries: list[IterationSummary]
    engine: Any  # the live policy pool (router actor, engine API), serving the kept weights
    judge: Any = None  # the judge pool: the policy pool itself unless backend.judge_replicas > 0
    sandbox: Any = None  # the sandbox pool, when the run used one


@dataclass
class Kept:
    """The version the pools serve between iterations, and what the next candidate is compared with."""

    version: int
    checkpoint: str
    items: Items | None = None  # its evaluation, item by item (None: not evaluated)
    metrics: dict[str, Any] | None = None


def run_loop(cfg: RsiConfig, console: Console | None = None) -> RunResult:
    running: list[RunResult] = []  # the pools, once up: a run that fails ends them, since no caller holds them
    # vLLM/Ray/transformers INFO and WARNING lines go to run.dir/logs/ unless log.verbose
    with third_party_logs(Path(cfg.run.dir), cfg.log.verbose):
        try:
            return _run_loop(cfg, console, running)
        except BaseException:
            for result in running:
                with suppress(Exception):  # the run's own error is what the caller must see
                    teardown(result)
            raise


def teardown(result: RunResult) -> None:
    """End a run's pools and sandbox, so that the next run (a sweep's next job) starts its own on a free
    cluster."""
    import ray

    pools = [result.engine] if result.judge is None or result.judge is result.engine else [result.engine,
                                                                                           result.judge]
    for pool in pools:
        for replica in ray.get(pool.replica_handles.remote()):
            ray.kill(replica, no_restart=True)
        ray.kill(pool, no_restart=True)
    if result.sandbox is not None:
        result.sandbox.close()


def _run_loop(cfg: RsiConfig, console: Console | None, running: list[RunResult]) -> RunResult:
    import ray

    started = time.perf_counter()
    # Piped into a log, rich would wrap tables at 80 columns; a fixed width keeps them readable there.
    console = console or (Console() if sys.stdout.isatty() else Console(width=130))
    model_path = preflight(cfg)  # before Ray: bad keys, paths and models fail here
    run_dir = Path(cfg.run.dir)
    history = load_history(run_dir) if cfg.run.resume else fresh_run_dir(run_dir)
    init_ray(cfg.cluster, verbose=cfg.log.verbose)
    if not cfg.log.verbose:
        quiet_ray_data()
        ray_logs_link(run_dir / "logs")
    check_shared_storage(cfg.run.dir, cfg.cluster.storage_path)  # a multi-node run needs storage every node sees
    with console.status(f"starting {cfg.backend.name} pools on {model_path}"):
        # Long-lived replica pools with the engine's API; the stages call them as they would one engine.
        engine = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "policy"))
        judge = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "judge")) \
            if cfg.backend.judge_replicas else engine
    pools = [engine] if judge is engine else [engine, judge]
    board = start_board()  # where DPO's workers report their steps
    running.append(RunResult([], engine, judge))
    sandbox = start_sandbox(cfg) if needs_sandbox(cfg) or cfg.evals.enabled else None
    running[0].sandbox = sandbox
    tracker = Tracker(cfg.tracker, run_dir)
    overlap = held_out_filter(cfg)

    kept = Kept(0, model_path)
    if history:  # resumed: every decision stands; the pools go back to the kept weights under their version
        kept = Kept(history[-1].kept_version, history[-1].kept_checkpoint)
        ray.get([p.update_weights.remote(kept.checkpoint, kept.version) for p in pools])
    startup = time.perf_counter() - started

    first = len(history)
    for iteration in range(first, cfg.loop.iterations):
        served = kept.version
        console.rule(f"iteration {iteration} · policy v{served}")
        seconds = {"startup": startup if iteration == first else 0.0}
        gated = cfg.evals.enabled and iteration % cfg.evals.every == 0
        if gated and kept.items is None:  # v0, or a version kept ungated, or a resumed run's
            with timed(seconds, "eval_kept"), console.status(f"evaluating v{kept.version}"):
                kept.metrics, kept.items = evaluate_version(cfg, engine, judge, sandbox, run_dir, kept.version,
                                                            reuse=True)

        corpus_dir = run_dir / "corpus" / f"iter_{iteration:03d}"
        loads_before = engine_loads(pools)
        with timed(seconds, "corpus_pass"), console.status("corpus pass") as status:
            stats = run_corpus_pass(cfg, engine, iteration, corpus_dir, model_version=served,
                                    sandbox=sandbox, judge=judge, overlap=overlap,
                                    progress=ChainProgress(console, status))
        busy = busy_share(loads_before, engine_loads(pools), seconds["corpus_pass"])
        console.print(step_table(stats))

        candidate = iteration + 1  # versions never repeat, so a rejected checkpoint is never overwritten
        trained_from = kept.checkpoint
        if cfg.backend.colocate:  # free the GPUs for the trainer (a no-op where vLLM cannot sleep)
            ray.get([p.sleep.remote() for p in pools])
        with timed(seconds, "dpo"), console.status("DPO under Ray Train") as status, \
                watch_dpo(console, status, board):
            result = train_dpo(str(corpus_dir / "preferences"), trained_from,
                               str(checkpoint_dir(run_dir, candidate)), cfg.train, overwrite=True,
                               storage_path=cfg.cluster.storage_path,
                               logging_dir=dpo_logging_dir(tracker, candidate))
        if cfg.backend.colocate:
            ray.get([p.wake_up.remote() for p in pools])
        with timed(seconds, "swap"):
            # Every pool drains, swaps its replicas in place and resumes; self-judging keeps one version.
            ray.get([p.update_weights.remote(result.checkpoint, candidate) for p in pools])

        evals: dict[str, Any] = {}
        decision, reasons, cand_items, cand_metrics = "ungated", [], None, None
        if gated:
            with timed(seconds, "eval"), console.status(f"evaluating v{candidate}"):
                cand_metrics, cand_items = evaluate_version(cfg, engine, judge, sandbox, run_dir, candidate,
                                                            reuse=False)
            verdict = decide(kept.items or {}, cand_items, cfg.gate)
            decision, reasons = ("kept" if verdict.keep else "rejected"), verdict.reasons
            evals = {"kept": kept.metrics, "candidate": cand_metrics, "gate": verdict.gate,
                     "claim": verdict.claim, "vs_v0": vs_v0(run_dir, cand_items)}
        if decision == "rejected":
            with timed(seconds, "rollback"):  # the same hot-swap, back to the kept weights and version
                ray.get([p.update_weights.remote(kept.checkpoint, kept.version) for p in pools])
        else:
            kept = Kept(candidate, result.checkpoint, cand_items, cand_metrics)
        mark_manifest(corpus_dir, gate={"candidate": candidate, "decision": decision, "reasons": reasons})

        summary = IterationSummary(
            iteration=iteration, model_version=served, new_version=candidate,
            kept_version=kept.version, kept_checkpoint=kept.checkpoint, decision=decision,
            checkpoint=result.checkpoint, trained_from=trained_from, performances=stats.rows.get("performances", 0),
            judgments=stats.rows.get("judgments", 0), preferences=stats.rows.get("preferences", 0),
            parse_rate=sum(stats.parse_rate.values()) / max(len(stats.parse_rate), 1),
            parse_rate_per_step=stats.parse_rate, pairs_per_step=stats.pairs_per_step,
            position_bias=stats.position_bias, mean_length=stats.mean_length,
            overlap_dropped=stats.overlap_dropped, dpo_loss=result.loss,
            dpo_curve=[[s, v] for s, v in result.curve], seconds=seconds,
            gen_tokens_per_s=stats.tokens / seconds["corpus_pass"] if seconds["corpus_pass"] else 0.0,
            engine_busy=busy,
            engine_pid=ray.get(engine.health.remote())["pids"][0], evals=evals, gate_reasons=reasons)
        record_iteration(run_dir, history, summary)
        tracker.log(tracked_scalars(summary), step=iteration)
        console.print(summary_table(history))
    tracker.close()
    return RunResult(history, engine, judge, sandbox)


# ---- the steps ---------------------------------------------------------------------------------------------
def fresh_run_dir(run_dir: Path) -> list[IterationSummary]:
    """A run that does not resume starts from an empty history: records, evaluations and summaries of an
    earlier run in the same folder go (the corpus writer clears its own iteration folders)."""
    for name in ("iterations", "evals"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    return []


def engine_spec(cfg: RsiConfig, model_path: str) -> EngineSpec:
    b = cfg.backend
    return EngineSpec(model_path=model_path, backend=b.name, dtype=cfg.model.dtype,
                      max_model_len=cfg.model.max_model_len, threads=b.threads, kv_cache_gb=b.kv_cache_gb,
                      tensor_parallel_size=b.tensor_parallel_size, enforce_eager=b.enforce_eager,
                      seed=cfg.run.seed, engine_kwargs=dict(b.engine_kwargs), sleep_mode=b.colocate)


def pool_config(cfg: RsiConfig, name: str) -> PoolConfig:
    b = cfg.backend
    return PoolConfig(replicas=b.judge_replicas if name == "judge" else b.replicas, max_in_flight=b.max_in_flight,
                      max_restarts=b.max_restarts, num_cpus=b.num_cpus, num_gpus=b.num_gpus, name=name)


def start_sandbox(cfg: RsiConfig) -> Any:
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.pool import SandboxPool

    s = cfg.sandbox
    limits = Limits(timeout_s=s.timeout_s, memory_mb=s.memory_mb)
    return SandboxPool(SandboxConfig(launcher=s.launcher, slots=s.slots, canary=s.canary, limits=limits,
                                     jobs_per_sandbox=s.jobs_per_sandbox),
                       num_workers=s.workers, num_cpus_per_worker=0,
                       resources={s.resource: 1} if s.resource else None)


def held_out_filter(cfg: RsiConfig) -> Any:
    """What keeps evaluation items out of the preferences (None when evaluation or the filter is off)."""
    from rsi.evals.overlap import OverlapFilter, held_out_texts

    if not (cfg.evals.enabled and cfg.evals.overlap_ngram):
        return None
    return OverlapFilter(held_out_texts(cfg.evals.tasks, cfg.evals.data), cfg.evals.overlap_ngram)


def evaluate_version(cfg: RsiConfig, engine: Any, judge: Any, sandbox: Any, run_dir: Path, version: int, *,
                     reuse: bool) -> tuple[dict[str, Any], Items]:
    """Score the version the pools serve now on the held-out tasks; `evals/v{version}/` holds the result.
    With `reuse`, an evaluation on disk (a kept version's, from before a resume) is read back instead of redone;
    a candidate is always scored anew, since its weights are retrained after a crash."""
    import ray

    from rsi.evals.compare import load_eval_dir
    from rsi.evals.suite import evaluate
    from rsi.evals.task import EvalContext

    out = eval_dir(run_dir, version)
    if not (reuse and (out / "metrics.json").is_file()):
        ctx = EvalContext(generate=lambda reqs: ray.get(engine.generate.remote(reqs)),
                          judge=lambda reqs: ray.get(judge.generate.remote(reqs)),
                          run_jobs=sandbox.run_dicts if sandbox is not None else None, limit=cfg.evals.limit,
                          limits=dict(cfg.evals.limits),
                          data=dict(cfg.evals.data), families=list(cfg.evals.families or cfg.tasks),
                          judging=cfg.judging)
        evaluate(list(cfg.evals.tasks), ctx, str(out))
    return load_eval_dir(str(out))


def vs_v0(run_dir: Path, items: Items) -> dict[str, Any]:
    """The candidate against v0 on the claim half, once v0 was evaluated: the gate chose versions on the other
    half, so only this one can show that the loop improved."""
    from rsi.evals.compare import load_eval_dir

    v0 = eval_dir(run_dir, 0)
    return paired(load_eval_dir(str(v0))[1], items, "claim") if (v0 / "metrics.json").is_file() else {}


def dpo_logging_dir(tracker: Tracker, version: int) -> str | None:
    base = tracker.dpo_logging_dir
    return str(base / f"dpo_v{version}") if base else None


def engine_loads(pools: list[Any]) -> list[dict[str, float]]:
    """Each pool's summed replica load figures and its replica count (rsi.inference.vllm_backend.EngineLoad)."""
    import ray

    loads = ray.get([p.engine_load.remote() for p in pools])
    counts = [len(h["replicas"]) for h in ray.get([p.health.remote() for p in pools])]
    return [{**load, "replicas": n} for load, n in zip(loads, counts)]


def busy_share(before: list[dict[str, float]], after: list[dict[str, float]], wall: float) -> float | None:
    """The share of a pass during which the engines had requests in flight, averaged over every replica; None
    where the backend does not account for it (transformers)."""
    if wall <= 0 or any("busy_s" not in load for load in after):
        return None
    busy = sum(a["busy_s"] - b.get("busy_s", 0.0) for a, b in zip(after, before))
    return busy / (wall * sum(load["replicas"] for load in after))


@contextmanager
def timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    """`with timed(seconds, "dpo"):` adds the block's wall time to seconds["dpo"]."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


def tracked_scalars(s: IterationSummary) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "corpus/preferences": s.preferences, "corpus/parse_rate": s.parse_rate, "dpo/loss": s.dpo_loss,
        "gate/kept": float(s.decision != "rejected"), "corpus/gen_tokens_per_s": s.gen_tokens_per_s,
        "corpus/engine_busy": s.engine_busy,
        **{f"seconds/{k}": v for k, v in s.seconds.items()},
    }
    for role in ("kept", "candidate"):
        for task, m in (s.evals.get(role) or {}).items():
            out[f"eval_{role}/{task}"] = m["value"]
    for task, c in (s.evals.get("gate") or {}).items():
        out[f"gate_delta/{task}"] = c["delta"]
    return out
