"""GPU check of LoRA serving (run by scripts/gpu_check.sh): a 2-replica vLLM pool started with LoRA on the GPU
(`enable_lora`, punica's CUDA kernels), swapped to an adapter folder (loaded beside the base, which stays), then
to a second one, and rolled back to the first by route. Checks: each completion carries the version served; the
pool's greedy tokens under the adapter equal a fresh engine started on base plus that adapter; after the
rollback they equal the first adapter's again; an adapter recording other base weights is refused and the pool
keeps serving. Prints the swap and rollback seconds against the fresh pool's start; exits non-zero on a failed
check.

    python scripts/gpu_check_lora.py --model DIR [--replicas 2] [--prompts 16] [--max-tokens 64]

On a machine without a GPU the same steps run on CPU (vLLM's punica CPU path): a dry run of the plumbing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_adapter(base: str, out: Path, seed: int) -> str:
    """A reused folder, else a new adapter whose B matrices are off zero (so it changes the outputs)."""
    from rsi.train.lora import random_adapter

    return str(out) if (out / "adapter_config.json").is_file() else random_adapter(base, out, seed, scale=0.05)


def main() -> int:
    import json

    import ray
    import torch

    from rsi.inference import EngineSpec, PoolConfig, start_engine, start_pool
    from rsi.train.lora import base_hash

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="base model folder (scripts/gpu_check.py builds one)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    gpus = torch.cuda.device_count()
    base = args.model
    work = Path(base).parent
    first, second = make_adapter(base, work / "lora-v1", 1), make_adapter(base, work / "lora-v2", 2)
    per_replica = (1.0 if gpus >= args.replicas else 0.4 / max(1, args.replicas // max(1, gpus))) if gpus else 0.0
    util = 0.8 if per_replica == 1.0 else 0.25
    ray.init(num_gpus=gpus, include_dashboard=False)
    spec = EngineSpec(model_path=base, backend="vllm", dtype="bfloat16" if gpus else "float32", max_model_len=2048,
                      enforce_eager=True, threads=1, kv_cache_gb=0.25, lora_rank=16, base_hash=base_hash(base),
                      engine_kwargs={"gpu_memory_utilization": util} if gpus else {})
    config = PoolConfig(replicas=args.replicas, num_gpus=per_replica, num_cpus=1 if gpus else 0)
    prompts = [{"messages": [{"role": "user", "content": f"Task {i}: write a function that sorts words."}],
                "max_tokens": args.max_tokens} for i in range(args.prompts)]

    def answer(pool: object, version: int) -> list[list[int]]:
        out = ray.get(pool.generate.remote(prompts))
        assert {c["model_version"] for c in out} == {version}, "a completion carries another version"
        return [c["token_ids"] for c in out]

    t0 = time.perf_counter()
    pool = start_pool(spec, config)
    start_s = time.perf_counter() - t0
    v0 = answer(pool, 0)
    t0 = time.perf_counter()
    ray.get(pool.update_weights.remote(first, 1))
    swap_s = time.perf_counter() - t0
    v1 = answer(pool, 1)
    ray.get(pool.update_weights.remote(second, 2))
    v2 = answer(pool, 2)
    t0 = time.perf_counter()
    ray.get(pool.update_weights.remote(first, 1))  # the gate's rollback: a change of route
    rollback_s = time.perf_counter() - t0
    back = answer(pool, 1)
    bad = work / "lora-other-base"
    bad.mkdir(exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (bad / name).write_bytes((Path(first) / name).read_bytes())
    (bad / "rsi_adapter.json").write_text(json.dumps({"base_model": "/elsewhere", "base_hash": "0" * 64}))
    try:
        ray.get(pool.update_weights.remote(str(bad), 3))
        refused = False
    except Exception as e:  # noqa: BLE001 - the pool's ValueError arrives wrapped by Ray
        refused = "the pool serves" in str(e)
    still = answer(pool, 1) == v1
    for h in ray.get(pool.replica_handles.remote()):
        ray.kill(h)
    ray.kill(pool)

    fresh = start_engine(dataclasses.replace(spec, adapter=second, initial_version=2), num_gpus=per_replica,
                         num_cpus=1 if gpus else 0)
    expected = [c["token_ids"] for c in ray.get(fresh.generate.remote(prompts))]
    ray.kill(fresh)
    checks = {"adapter changes the answers": v1 != v0 and v2 != v1,
              "greedy equal to a fresh engine on base + adapter": v2 == expected,
              "rollback answers as the first adapter did": back == v1,
              "adapter of other base weights refused, pool still serving": refused and still}
    print(f"lora pool start s ({args.replicas} replicas): {start_s:.1f}")
    print(f"lora swap s (new adapter, drain included): {swap_s:.3f} ({swap_s / start_s:.4f} of a fresh pool start)")
    print(f"lora rollback s (route back): {rollback_s:.4f}")
    for name, ok in checks.items():
        print(f"{name}: {ok}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
