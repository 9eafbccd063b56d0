"""What our plumbing costs: the same prompts through (a) a bare engine in this process and (b) a streaming Ray
Data stage sending them to an EnginePool through its router actor. Prints generated tokens/s of each and b/a
(target >= 0.9), medians over interleaved repeats; then the peak RSS of the whole Ray session for 100 vs 1,000
streamed tasks (target ratio <= 1.2), split into the engine replicas and everything else (driver, router,
Ray Data workers, Ray's own daemons).

    .venv/bin/python scripts/bench/pipeline.py [--model smollm2-135m] [--prompts 64] [--max-tokens 32]
        [--repeats 3] [--replicas 1] [--threads 2] [--batch 8] [--rss-tasks 100 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from rsi.inference import EngineSpec, PoolConfig, start_pool  # noqa: E402
from rsi.inference.engine import EngineActor  # noqa: E402
from rsi.models import resolve_model_path  # noqa: E402

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle

TOPICS = ["parse dates", "merge intervals", "count words", "validate emails", "rotate a matrix",
          "flatten lists", "dedupe records", "format money"]


def requests(n: int, max_tokens: int) -> list[dict[str, Any]]:
    # ignore_eos-like budget: a fixed length keeps both paths generating the same token count
    return [{"messages": [{"role": "user", "content": f"Task {i}: write a Python function to {TOPICS[i % 8]}."}],
             "max_tokens": max_tokens, "temperature": 0.0} for i in range(n)]


def stage(batch: dict[str, np.ndarray], *, pool: PoolHandle, max_tokens: int) -> dict[str, list[Any]]:
    """A pipeline stage in the shape the corpus stages use: one blocking call on the pool per batch."""
    import ray

    reqs = [{"messages": [{"role": "user", "content": str(p)}], "max_tokens": max_tokens, "temperature": 0.0}
            for p in batch["prompt"]]
    outs = ray.get(pool.generate.remote(reqs))
    return {"i": list(batch["i"]), "tokens": [o["num_tokens"] for o in outs],
            "version": [o["model_version"] for o in outs]}


def load_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """One path's engine figures: steps, mean batch, and shares of its wall time stepping / stalled / idle."""
    d = {k: after[k] - before[k] for k in after}
    steps = max(1, int(d["steps"]))
    return {"steps": d["steps"], "mean_batch": d["stepped_requests"] / steps, "ms_per_step": 1e3 * d["step_s"] / steps,
            "stepping": d["step_s"] / wall, "stalled": (d["busy_s"] - d["step_s"]) / wall,
            "idle": 1 - d["busy_s"] / wall}


def run_bare(engine: EngineActor, reqs: list[dict[str, Any]]) -> tuple[int, float]:
    t0 = time.perf_counter()
    outs = engine.generate(reqs)
    return sum(o["num_tokens"] for o in outs), time.perf_counter() - t0


def run_pipeline(pool: PoolHandle, reqs: list[dict[str, Any]], batch: int, max_tokens: int,
                 concurrency: int) -> tuple[int, float, int]:
    import ray.data

    items = [{"i": i, "prompt": r["messages"][0]["content"]} for i, r in enumerate(reqs)]
    t0 = time.perf_counter()
    # concurrency × batch bounds the requests in flight (and so memory); sized to fill the replicas' batches
    ds = ray.data.from_items(items).map_batches(stage, batch_size=batch, num_cpus=0, concurrency=concurrency,
                                                fn_kwargs={"pool": pool, "max_tokens": max_tokens})
    tokens = rows = 0
    for row in ds.iter_rows():  # streamed and dropped: nothing accumulates in the driver
        tokens += int(row["tokens"])
        rows += 1
    return tokens, time.perf_counter() - t0, rows


def run_direct(pool: PoolHandle, reqs: list[dict[str, Any]], batch: int) -> tuple[int, float]:
    """The pool without Ray Data: the same batches as concurrent calls from this process (attribution)."""
    import ray

    t0 = time.perf_counter()
    outs = ray.get([pool.generate.remote(reqs[i:i + batch]) for i in range(0, len(reqs), batch)])
    return sum(o["num_tokens"] for out in outs for o in out), time.perf_counter() - t0


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this process and every descendant (Ray's daemons and workers), with a name."""
    import psutil

    snap = {}
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = proc.cpu_times()
            snap[proc.pid] = (proc.name(), times.user + times.system)
        except psutil.Error:
            continue
    return snap


def cpu_by_part(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], engine_pids: set[int],
                wall: float) -> dict[str, float]:
    """CPU seconds per second of wall time, by part: engine replicas, this driver, everything else."""
    me = os.getpid()
    parts = {"engine": 0.0, "driver": 0.0, "rest": 0.0}
    rest: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        used = cpu - before.get(pid, ("", 0.0))[1]
        part = "engine" if pid in engine_pids else "driver" if pid == me else "rest"
        parts[part] += used
        if part == "rest":
            rest[name] = rest.get(name, 0.0) + used / wall
    if os.environ.get("RSI_BENCH_CPU_DETAIL"):
        print("rest:", {k: round(v, 3) for k, v in sorted(rest.items(), key=lambda kv: -kv[1])[:6]})
    return {k: v / wall for k, v in parts.items()}


class RssSampler:
    """Peak of the summed RSS of this process and all its descendants (Ray's daemons and workers included)."""

    def __init__(self, engine_pids: set[int]):
        import psutil

        self.root = psutil.Process()
        self.engine_pids = engine_pids
        self.peak_total = self.peak_rest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = rest = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if p.pid not in self.engine_pids:
                rest += rss
        self.peak_total, self.peak_rest = max(self.peak_total, total), max(self.peak_rest, rest)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="OMP threads per engine (bare and each replica)")
    parser.add_argument("--batch", type=int, default=8, help="Ray Data batch size of the stage")
    parser.add_argument("--concurrency", type=int, default=8, help="stage tasks in flight")
    parser.add_argument("--rss-tasks", type=int, nargs=2, default=[100, 1000])
    parser.add_argument("--rss-max-tokens", type=int, default=4)
    parser.add_argument("--cold-workers", action="store_true",
                        help="Ray's default: idle task workers beyond the CPU count end after 1 s, so every (b) run "
                             "starts some worker processes anew; without it they stay, as in a running corpus pass")
    args = parser.parse_args()

    path = resolve_model_path(args.model, None)
    spec = EngineSpec(model_path=path, backend="vllm", kv_cache_gb=0.5, max_model_len=2048, threads=args.threads)
    # In a corpus pass the stage workers run task after task; here the (a) and (c) runs leave them idle for
    # seconds between (b) runs, and Ray would end and restart them (about 1 CPU-second each) every time.
    keep = {} if args.cold_workers else {"_system_config": {"idle_worker_killing_time_threshold_ms": 600_000}}
    ray.init(num_cpus=4, include_dashboard=False, **keep)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(__import__(__name__))  # the stage must reach Ray's workers
    pool = start_pool(spec, PoolConfig(replicas=args.replicas, num_cpus=0, max_in_flight=256))
    bare = EngineActor(spec)
    reqs = requests(args.prompts, args.max_tokens)

    run_bare(bare, reqs[:8])  # warm both paths: first-call compilation, Ray Data's workers
    run_pipeline(pool, reqs[:8], args.batch, args.max_tokens, args.concurrency)
    a_rates, b_rates, c_rates = [], [], []
    loads: dict[str, list[dict[str, float]]] = {"a": [], "b": [], "c": []}
    pool_pids = set(ray.get(pool.health.remote())["pids"])
    for _ in range(args.repeats):  # interleaved, so drifting load on the box hits both alike
        before, cpu = bare.engine_load(), cpu_snapshot()
        tok, sec = run_bare(bare, reqs)
        a_rates.append(tok / sec)
        loads["a"].append(load_delta(before, bare.engine_load(), sec)
                          | cpu_by_part(cpu, cpu_snapshot(), {os.getpid()}, sec))
        before, cpu = ray.get(pool.engine_load.remote()), cpu_snapshot()
        tok, sec, rows = run_pipeline(pool, reqs, args.batch, args.max_tokens, args.concurrency)
        assert rows == len(reqs)
        b_rates.append(tok / sec)
        loads["b"].append(load_delta(before, ray.get(pool.engine_load.remote()), sec)
                          | cpu_by_part(cpu, cpu_snapshot(), pool_pids, sec))
        before, cpu = ray.get(pool.engine_load.remote()), cpu_snapshot()
        tok, sec = run_direct(pool, reqs, args.batch)
        c_rates.append(tok / sec)
        loads["c"].append(load_delta(before, ray.get(pool.engine_load.remote()), sec)
                          | cpu_by_part(cpu, cpu_snapshot(), pool_pids, sec))
    del bare

    engine_pids = set(ray.get(pool.health.remote())["pids"])
    rss: dict[int, tuple[int, int, float]] = {}
    for n in args.rss_tasks:
        with RssSampler(engine_pids) as sampler:
            tok, sec, rows = run_pipeline(pool, requests(n, args.rss_max_tokens), args.batch, args.rss_max_tokens,
                                          args.concurrency)
        assert rows == n
        rss[n] = (sampler.peak_total, sampler.peak_rest, tok / sec)

    a, b = statistics.median(a_rates), statistics.median(b_rates)
    table = Table(title=f"bare engine vs Ray Data + pool · {args.model} · {args.prompts} prompts × "
                        f"{args.max_tokens} tokens · replicas={args.replicas} threads={args.threads} "
                        f"batch={args.batch}×{args.concurrency} tasks{' (cold workers)' if args.cold_workers else ''} "
                        f"(medians of {args.repeats})")
    for col in ("path", "tokens/s", "runs"):
        table.add_column(col, justify="right")
    table.add_row("(a) bare engine, one process", f"{a:.1f}", " ".join(f"{x:.1f}" for x in a_rates))
    table.add_row("(b) Ray Data stage → pool", f"{b:.1f}", " ".join(f"{x:.1f}" for x in b_rates))
    table.add_row("(c) pool, direct calls (no Ray Data)", f"{statistics.median(c_rates):.1f}",
                  " ".join(f"{x:.1f}" for x in c_rates))
    console = Console(width=150)
    console.print(table)
    where = Table(title="where the engine's time goes (medians): stepping, requests waiting with no step (stalled), "
                        "nothing in flight (idle)")
    for col in ("path", "steps", "mean batch", "ms/step", "stepping", "stalled", "idle", "CPU engine",
                "CPU driver", "CPU rest"):
        where.add_column(col, justify="right")
    for path, name in (("a", "bare"), ("b", "Ray Data → pool"), ("c", "pool direct")):
        med = {k: statistics.median(x[k] for x in loads[path]) for k in loads[path][0]}
        where.add_row(name, f"{med['steps']:.0f}", f"{med['mean_batch']:.1f}", f"{med['ms_per_step']:.0f}",
                      f"{med['stepping']:.0%}", f"{med['stalled']:.0%}", f"{med['idle']:.0%}",
                      f"{med['engine']:.2f}", f"{med['driver']:.2f}", f"{med['rest']:.2f}")
    console.print(where)
    paired = statistics.median(y / x for x, y in zip(a_rates, b_rates))
    console.print(f"ratio b/a = {b / a:.3f} (of medians), {paired:.3f} (median of paired runs)  (target >= 0.9)")
    console.print(f"ratio c/a = {statistics.median(y / x for x, y in zip(a_rates, c_rates)):.3f} (paired): "
                  "the pool and Ray actors alone, without Ray Data")
    lo, hi = args.rss_tasks
    mib = 1 << 20
    for n in args.rss_tasks:
        total, rest, rate = rss[n]
        console.print(f"{n:>5} tasks: peak RSS total {total / mib:.0f} MiB, without engine replicas "
                      f"{rest / mib:.0f} MiB, {rate:.1f} tokens/s")
    console.print(f"peak RSS ratio {hi}/{lo} tasks: total {rss[hi][0] / rss[lo][0]:.3f}, "
                  f"without engines {rss[hi][1] / rss[lo][1]:.3f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
