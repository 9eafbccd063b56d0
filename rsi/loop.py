"""The whole run on one screen: preflight → cluster → pools → evaluate v0 → per iteration: corpus pass → DPO →
hot-swap → evaluate the candidate → keep it, or swap back to the kept weights."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from rsi.cluster_env import check_shared_storage, init_ray
from rsi.config import RsiConfig, plain_config, validate
from rsi.console import quiet_ray_data, ray_logs_link, third_party_logs
from rsi.corpus.stream import mark_manifest
from rsi.evals.gate import Items, decide, paired
from rsi.history import NO_PAIRS, IterationSummary, load_history, record_iteration
from rsi.pipeline.corpus_pass import needs_sandbox, run_corpus_pass
from rsi.preflight import preflight
from rsi.progress import ChainProgress, start_board, watch_dpo
from rsi.run_dir import RunDir, claim
from rsi.serving import Pools, serving
from rsi.tables import step_table, summary_table
from rsi.tracking import Tracker
from rsi.train import train_dpo
from rsi.train.lora import weights_record

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle


@dataclass
class Kept:
    """The version the pools serve between iterations, and what the next candidate is compared with."""

    version: int
    checkpoint: str
    items: Items | None = None  # its evaluation, item by item (None: not evaluated)
    metrics: dict[str, Any] | None = None


def run_loop(cfg: RsiConfig, console: Console | None = None, pools: Pools | None = None) -> list[IterationSummary]:
    """The whole run: setup (preflight, the run folder, Ray, the pools) → iterations → cleanup (the pools end
    with the run, whether it finishes or fails). With `pools`, the run serves from pools its caller started
    with `serving` and still owns."""
    started = time.perf_counter()
    # Piped into a log, rich would wrap tables at 80 columns; a fixed width keeps them readable there.
    console = console or (Console() if sys.stdout.isatty() else Console(width=130))
    validate(cfg)  # bad keys and values fail before anything is written
    with claim(Path(cfg.run.dir), plain_config(cfg), resume=cfg.run.resume, overwrite=cfg.run.overwrite,
               defaults=plain_config(RsiConfig())) as run, \
            third_party_logs(run.root, cfg.log.verbose):  # vLLM/Ray/transformers lines go to run.dir/logs/
        model_path = preflight(cfg)  # before Ray: paths and models that cannot load fail here
        run.save_config(plain_config(cfg))
        history = load_history(run.root) if cfg.run.resume else []
        console.print(init_ray(cfg.cluster, verbose=cfg.log.verbose), markup=False)
        if not cfg.log.verbose:
            quiet_ray_data()
            ray_logs_link(run.logs)
        check_shared_storage(cfg.run.dir, cfg.cluster.storage_path)  # a multi-node run needs storage all nodes see
        if pools is not None:
            return iterate(cfg, pools, run, history, model_path, console, started)
        console.print(f"starting {cfg.backend.name} pools on {model_path}", markup=False)
        with serving(cfg, model_path, sandbox=needs_sandbox(cfg) or cfg.evals.enabled) as live:
            return iterate(cfg, live, run, history, model_path, console, started)


def iterate(cfg: RsiConfig, pools: Pools, run: RunDir, history: list[IterationSummary], model_path: str,
            console: Console, started: float) -> list[IterationSummary]:
    """Evaluate v0, then per iteration: corpus pass → DPO → swap → evaluate → keep or roll back. A resumed
    `history` keeps every decision: the pools go back to the kept weights under their version."""
    import ray

    engine, judge, sandbox = pools.policy, pools.judge, pools.sandbox
    engines = pools.engines
    board = start_board()  # where DPO's workers report their steps
    tracker = Tracker(cfg.tracker, run.root)
    overlap = held_out_filter(cfg)

    kept = Kept(0, model_path)
    if history:
        kept = Kept(history[-1].kept_version, history[-1].kept_checkpoint)
        ray.get([p.update_weights.remote(kept.checkpoint, kept.version) for p in engines])
    startup = time.perf_counter() - started

    first = len(history)
    for iteration in range(first, cfg.loop.iterations):
        served, served_from = kept.version, weights_record(kept.checkpoint)
        console.rule(f"iteration {iteration} · policy v{served}")
        seconds = {"startup": startup if iteration == first else 0.0}
        gated = cfg.evals.enabled and iteration % cfg.evals.every == 0
        if gated and kept.items is None:  # v0, or a version kept ungated, or a resumed run's
            with timed(seconds, "eval_kept"), console.status(f"evaluating v{kept.version}"):
                kept.metrics, kept.items = evaluate_version(cfg, pools, run.evals(kept.version),
                                                            reuse=True)

        corpus_dir = run.corpus(iteration)
        loads_before = engine_loads(engines)
        with timed(seconds, "corpus_pass"), console.status("corpus pass") as status:
            stats = run_corpus_pass(cfg, engine, iteration, corpus_dir, model_version=served,
                                    sandbox=sandbox, judge=judge, overlap=overlap,
                                    progress=ChainProgress(console, status))
        busy = busy_share(loads_before, engine_loads(engines), seconds["corpus_pass"])
        console.print(step_table(stats))

        if not stats.rows.get("preferences"):  # every answer unusable, or no margin big enough: nothing to learn
            console.print(f"iteration {iteration}: the corpus pass gave no usable pair; v{served} stays, unchanged")
            mark_manifest(corpus_dir, gate={"candidate": None, "decision": NO_PAIRS, "reasons": ["no pairs"]},
                          weights=served_from)
            record_iteration(run.root, history, IterationSummary(
                iteration=iteration, model_version=served, new_version=served, kept_version=served,
                kept_checkpoint=kept.checkpoint, decision=NO_PAIRS, checkpoint=kept.checkpoint,
                trained_from=kept.checkpoint, performances=stats.rows.get("performances", 0),
                judgments=stats.rows.get("judgments", 0), parse_rate_per_step=stats.parse_rate,
                parse_rate=sum(stats.parse_rate.values()) / max(len(stats.parse_rate), 1), seconds=seconds,
                gate_reasons=["no usable preference pair"]))
            continue

        candidate = iteration + 1  # versions never repeat, so a rejected checkpoint is never overwritten
        trained_from = kept.checkpoint
        if cfg.backend.colocate:  # free the GPUs for the trainer (a no-op where vLLM cannot sleep)
            ray.get([p.sleep.remote() for p in engines])
        with timed(seconds, "dpo"), console.status("DPO under Ray Train") as status, \
                watch_dpo(console, status, board):
            result = train_dpo(str(corpus_dir / "preferences"), trained_from,
                               str(run.checkpoint(candidate)), cfg.train, overwrite=True,
                               storage_path=cfg.cluster.storage_path,
                               logging_dir=dpo_logging_dir(tracker, candidate))
        if cfg.backend.colocate:
            ray.get([p.wake_up.remote() for p in engines])
        with timed(seconds, "swap"):
            # Every pool drains, swaps its replicas in place and resumes; self-judging keeps one version.
            ray.get([p.update_weights.remote(result.checkpoint, candidate) for p in engines])

        evals: dict[str, Any] = {}
        decision, reasons, cand_items, cand_metrics = "ungated", [], None, None
        if gated:
            with timed(seconds, "eval"), console.status(f"evaluating v{candidate}"):
                cand_metrics, cand_items = evaluate_version(cfg, pools, run.evals(candidate),
                                                            reuse=False)
            verdict = decide(kept.items or {}, cand_items, cfg.gate)
            decision, reasons = ("kept" if verdict.keep else "rejected"), verdict.reasons
            evals = {"kept": kept.metrics, "candidate": cand_metrics, "gate": verdict.gate,
                     "claim": verdict.claim, "vs_v0": vs_v0(run, cand_items)}
        if decision == "rejected":
            with timed(seconds, "rollback"):  # the same hot-swap, back to the kept weights and version
                ray.get([p.update_weights.remote(kept.checkpoint, kept.version) for p in engines])
        else:
            kept = Kept(candidate, result.checkpoint, cand_items, cand_metrics)
        mark_manifest(corpus_dir, gate={"candidate": candidate, "decision": decision, "reasons": reasons},
                      weights=served_from)

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
            label_noise_swapped=int(result.metrics.get("label_noise_swapped", 0)),
            gen_tokens_per_s=stats.tokens / seconds["corpus_pass"] if seconds["corpus_pass"] else 0.0,
            engine_busy=busy,
            engine_pid=ray.get(engine.health.remote())["pids"][0], evals=evals, gate_reasons=reasons)
        record_iteration(run.root, history, summary)
        tracker.log(tracked_scalars(summary), step=iteration)
        console.print(summary_table(history))
    tracker.close()
    return history


# ---- the steps ---------------------------------------------------------------------------------------------
def held_out_filter(cfg: RsiConfig) -> Any:
    """What keeps evaluation items out of the preferences (None when evaluation or the filter is off)."""
    from rsi.evals.overlap import OverlapFilter, held_out_texts

    if not (cfg.evals.enabled and cfg.evals.overlap_ngram):
        return None
    return OverlapFilter(held_out_texts(cfg.evals.tasks, cfg.evals.data), cfg.evals.overlap_ngram)


def evaluate_version(cfg: RsiConfig, pools: Pools, out: Path, *, reuse: bool) -> tuple[dict[str, Any], Items]:
    """Score the version the pools serve now on the held-out tasks; `out` (evals/vN/) holds the result.
    With `reuse`, an evaluation on disk (a kept version's, from before a resume) is read back instead of redone;
    a candidate is always scored anew, since its weights are retrained after a crash."""
    import ray

    from rsi.evals.compare import load_eval_dir
    from rsi.evals.suite import evaluate
    from rsi.evals.task import EvalContext

    engine, judge, sandbox = pools.policy, pools.judge, pools.sandbox
    if not (reuse and (out / "metrics.json").is_file()):
        ctx = EvalContext(generate=lambda reqs: ray.get(engine.generate.remote(reqs)),
                          judge=lambda reqs: ray.get(judge.generate.remote(reqs)),
                          run_jobs=sandbox.run_dicts if sandbox is not None else None, limit=cfg.evals.limit,
                          limits=dict(cfg.evals.limits),
                          data=dict(cfg.evals.data), families=list(cfg.evals.families or cfg.tasks),
                          judging=cfg.judging, partner=_asker(pools.partner))
        evaluate(list(cfg.evals.tasks), ctx, str(out))
    return load_eval_dir(str(out))


def _asker(pool: PoolHandle | None) -> Any:
    import ray

    return None if pool is None else lambda reqs: ray.get(pool.generate.remote(reqs))


def vs_v0(run: RunDir, items: Items) -> dict[str, Any]:
    """The candidate against v0 on the claim half, once v0 was evaluated: the gate chose versions on the other
    half, so only this one can show that the loop improved."""
    from rsi.evals.compare import load_eval_dir

    v0 = run.evals(0)
    return paired(load_eval_dir(str(v0))[1], items, "claim") if (v0 / "metrics.json").is_file() else {}


def dpo_logging_dir(tracker: Tracker, version: int) -> str | None:
    base = tracker.dpo_logging_dir
    return str(base / f"dpo_v{version}") if base else None


def engine_loads(engines: list[PoolHandle]) -> list[dict[str, float]]:
    """Each pool's summed replica load figures and its replica count (rsi.inference.vllm_backend.EngineLoad)."""
    import ray

    loads = ray.get([p.engine_load.remote() for p in engines])
    counts = [len(h["replicas"]) for h in ray.get([p.health.remote() for p in engines])]
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
