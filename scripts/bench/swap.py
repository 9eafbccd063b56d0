"""Weight swap vs fresh engine start, per model and backend, measured in the same run.

For each model: start an engine on the base weights, swap in a second checkpoint (timed, repeated), then
start a fresh engine on that checkpoint (timed, repeated; the first vLLM start in a process also pays the
import, reported apart). Prints medians and the ratio swap/fresh, and checks the swapped engine's greedy
tokens equal the fresh engine's.

Then the same for replica pools on local Ray: `update_weights` on an N-replica pool (drain, swap every
replica, resume) vs starting a fresh pool on the new checkpoint (router and N replica processes, until every
replica has loaded), and the swapped pool's greedy tokens against the fresh pool's.

With `--weights lora` (run beside `full` by default) the same for LoRA (train.lora): each swap loads a new
adapter folder into engines whose base weights stay packed, a rollback routes back to the adapter before it, and
the fresh side starts engines (or a pool) on the base plus that adapter.

    .venv/bin/python scripts/bench/swap.py [--models tiny smollm2-135m] [--backends vllm hf] [--repeats 3]
        [--pool-replicas 2] [--pool-threads 1] [--skip-engine] [--skip-pool] [--weights full lora]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rsi.inference.engine import EngineActor, EngineSpec
from rsi.models import resolve_model_path

# the same greedy requests on every side, so tokens compare
PROMPTS = [{"messages": [{"role": "user", "content": f"Write a Python function #{i} that parses dates."}],
            "max_tokens": 24} for i in range(8)]


def stop_pool(pool: object) -> None:
    import ray

    for h in ray.get(pool.replica_handles.remote()):
        ray.kill(h)
    ray.kill(pool)


def perturbed_copy(src: str, out: Path) -> str:
    """A second checkpoint of the same model (every weight nudged), as a training step would produce."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * p.abs().mean() * 0.05)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out)


def measure_adapter(model: str, backend: str, repeats: int, work: Path) -> dict[str, float | bool]:
    """An engine with LoRA on: each swap loads a new adapter folder (as each iteration does), a rollback routes
    back to the one before; against a fresh engine started on the base plus the last adapter."""
    from rsi.train.lora import base_hash, random_adapter

    base = resolve_model_path(model, None)
    folders = [random_adapter(base, work / f"{model}-{backend}-lora-{i}", i) for i in range(repeats + 1)]
    spec = EngineSpec(model_path=base, backend=backend, kv_cache_gb=0.5, max_model_len=2048, lora_rank=16,
                      base_hash=base_hash(base))
    prompts = PROMPTS
    engine = EngineActor(spec)
    engine.update_weights(folders[0], 1)
    swaps, rollbacks = [], []
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        engine.update_weights(folders[i], i + 1)
        swaps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.update_weights(folders[i - 1], i)
        rollbacks.append(time.perf_counter() - t0)
        engine.update_weights(folders[i], i + 1)
    swapped = [c["token_ids"] for c in engine.generate(prompts)]
    del engine
    starts, fresh_tokens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = EngineActor(EngineSpec(**{**spec.__dict__, "adapter": folders[-1], "initial_version": repeats + 1}))
        starts.append(time.perf_counter() - t0)
        fresh_tokens = [c["token_ids"] for c in fresh.generate(prompts)]
        del fresh
    return {"swap_s": statistics.median(swaps), "rollback_s": statistics.median(rollbacks),
            "fresh_s": statistics.median(starts), "equal": swapped == fresh_tokens}


def measure(model: str, backend: str, repeats: int, work: Path) -> dict[str, float | bool]:
    base = resolve_model_path(model, None)
    other = perturbed_copy(base, work / f"{model}-b")
    spec = EngineSpec(model_path=base, backend=backend, kv_cache_gb=0.5, max_model_len=2048)
    prompts = PROMPTS

    t0 = time.perf_counter()
    engine = EngineActor(spec)
    first_start = time.perf_counter() - t0
    swaps = []
    for i in range(repeats):
        target = other if i % 2 == 0 else base
        t0 = time.perf_counter()
        engine.update_weights(target)
        swaps.append(time.perf_counter() - t0)
    if repeats % 2 == 0:  # end on the second checkpoint for the equality check
        engine.update_weights(other)
    swapped = [c["token_ids"] for c in engine.generate(prompts)]
    del engine

    starts = []
    fresh_tokens: list = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = EngineActor(EngineSpec(**{**spec.__dict__, "model_path": other}))
        starts.append(time.perf_counter() - t0)
        fresh_tokens = [c["token_ids"] for c in fresh.generate(prompts)]
        del fresh
    return {"swap_s": statistics.median(swaps), "fresh_s": statistics.median(starts),
            "first_start_s": first_start, "equal": swapped == fresh_tokens}


def measure_pool(model: str, backend: str, replicas: int, threads: int, repeats: int,
                 work: Path) -> dict[str, float | bool]:
    import ray

    from rsi.inference import PoolConfig, start_pool

    base = resolve_model_path(model, None)
    other = perturbed_copy(base, work / f"{model}-pool-b")
    spec = EngineSpec(model_path=base, backend=backend, kv_cache_gb=0.5, max_model_len=2048, threads=threads)
    config = PoolConfig(replicas=replicas, num_cpus=0)
    prompts = PROMPTS

    pool = start_pool(spec, config)
    ray.get(pool.generate.remote(prompts))  # in service before the swap, as in the loop
    swaps = []
    for i in range(repeats):
        t0 = time.perf_counter()
        ray.get(pool.update_weights.remote(other if i % 2 == 0 else base))
        swaps.append(time.perf_counter() - t0)
    if repeats % 2 == 0:
        ray.get(pool.update_weights.remote(other))
    swapped = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts))]
    stop_pool(pool)

    starts, fresh_tokens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = start_pool(EngineSpec(**{**spec.__dict__, "model_path": other}), config)
        starts.append(time.perf_counter() - t0)
        fresh_tokens = [c["token_ids"] for c in ray.get(fresh.generate.remote(prompts))]
        stop_pool(fresh)
    return {"swap_s": statistics.median(swaps), "fresh_s": statistics.median(starts),
            "equal": swapped == fresh_tokens}


def measure_pool_adapter(model: str, backend: str, replicas: int, threads: int, repeats: int,
                         work: Path) -> dict[str, float | bool]:
    """`update_weights` of an N-replica LoRA pool to a new adapter folder (drain, every replica loads it,
    resume), and the rollback to the one before (a change of route), vs a fresh pool started on base + adapter."""
    import ray

    from rsi.inference import PoolConfig, start_pool
    from rsi.train.lora import base_hash, random_adapter

    base = resolve_model_path(model, None)
    folders = [random_adapter(base, work / f"{model}-{backend}-pool-lora-{i}", 100 + i) for i in range(repeats + 1)]
    spec = EngineSpec(model_path=base, backend=backend, kv_cache_gb=0.5, max_model_len=2048, threads=threads,
                      lora_rank=16, base_hash=base_hash(base))
    config = PoolConfig(replicas=replicas, num_cpus=0)
    prompts = PROMPTS

    pool = start_pool(spec, config)
    ray.get(pool.update_weights.remote(folders[0], 1))
    ray.get(pool.generate.remote(prompts))  # in service before the swap, as in the loop
    swaps, rollbacks = [], []
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        ray.get(pool.update_weights.remote(folders[i], i + 1))
        swaps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ray.get(pool.update_weights.remote(folders[i - 1], i))
        rollbacks.append(time.perf_counter() - t0)
        ray.get(pool.update_weights.remote(folders[i], i + 1))
    swapped = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts))]
    stop_pool(pool)

    starts, fresh_tokens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = start_pool(EngineSpec(**{**spec.__dict__, "adapter": folders[-1], "initial_version": repeats + 1}),
                           config)
        starts.append(time.perf_counter() - t0)
        fresh_tokens = [c["token_ids"] for c in ray.get(fresh.generate.remote(prompts))]
        stop_pool(fresh)
    return {"swap_s": statistics.median(swaps), "rollback_s": statistics.median(rollbacks),
            "fresh_s": statistics.median(starts), "equal": swapped == fresh_tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2-135m"])
    parser.add_argument("--backends", nargs="+", default=["vllm", "hf"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool-replicas", type=int, default=2)
    parser.add_argument("--pool-threads", type=int, default=1, help="OMP threads per pool replica")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-pool", action="store_true")
    parser.add_argument("--weights", nargs="+", default=["full", "lora"], choices=["full", "lora"],
                        help="full: checkpoints of every weight; lora: adapter folders on base weights kept loaded")
    args = parser.parse_args()

    table = Table(title="weight swap vs fresh engine (medians)")
    for col in ("model", "backend", "weights", "swap s", "rollback s", "fresh start s", "swap/fresh",
                "first start s (with import)", "greedy equal"):
        table.add_column(col, justify="right")
    pools = Table(title=f"pool swap vs fresh pool start · {args.pool_replicas} replicas (medians)")
    for col in ("model", "backend", "weights", "pool swap s", "rollback s", "fresh pool start s", "swap/fresh",
                "greedy equal"):
        pools.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for backend in args.backends:
                if not args.skip_engine:
                    if "full" in args.weights:
                        r = measure(model, backend, args.repeats, Path(tmp))
                        table.add_row(model, backend, "full", f"{r['swap_s']:.3f}", "(a swap)", f"{r['fresh_s']:.2f}",
                                      f"{r['swap_s'] / r['fresh_s']:.4f}", f"{r['first_start_s']:.2f}",
                                      str(r["equal"]))
                    if "lora" in args.weights:
                        r = measure_adapter(model, backend, args.repeats, Path(tmp))
                        table.add_row(model, backend, "lora", f"{r['swap_s']:.3f}", f"{r['rollback_s']:.4f}",
                                      f"{r['fresh_s']:.2f}", f"{r['swap_s'] / r['fresh_s']:.4f}", "",
                                      str(r["equal"]))
                if not args.skip_pool:
                    import ray

                    if not ray.is_initialized():
                        ray.init(num_cpus=4, include_dashboard=False)
                    if "full" in args.weights:
                        p = measure_pool(model, backend, args.pool_replicas, args.pool_threads, args.repeats,
                                         Path(tmp))
                        pools.add_row(model, backend, "full", f"{p['swap_s']:.3f}", "(a swap)", f"{p['fresh_s']:.2f}",
                                      f"{p['swap_s'] / p['fresh_s']:.4f}", str(p["equal"]))
                    if "lora" in args.weights:
                        p = measure_pool_adapter(model, backend, args.pool_replicas, args.pool_threads,
                                                 args.repeats, Path(tmp))
                        pools.add_row(model, backend, "lora", f"{p['swap_s']:.3f}", f"{p['rollback_s']:.4f}",
                                      f"{p['fresh_s']:.2f}", f"{p['swap_s'] / p['fresh_s']:.4f}", str(p["equal"]))
    console = Console(width=140)
    if not args.skip_engine:
        console.print(table)
    if not args.skip_pool:
        console.print(pools)


if __name__ == "__main__":
    main()
