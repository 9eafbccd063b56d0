"""GPU check of the serving path (run by scripts/gpu_check.sh): a 2-replica vLLM pool on one or more GPUs,
tokens/s, a weight push from a separate training process (NCCL when the trainer has a GPU of its own, CUDA IPC
when it shares the replicas' GPU), the swapped pool's greedy tokens against a fresh engine on the same weights,
and the disk swap for comparison. Prints one line per figure and exits non-zero on a failed check.

    python scripts/gpu_check.py --model DIR [--replicas 2] [--prompts 64] [--max-tokens 128] [--sync auto]

`--sync disk` on a machine without a GPU runs the same steps on CPU (the push replaced by a disk swap): a dry
run of this script's plumbing, not of the GPU path.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(out: Path, hidden: int = 1536, layers: int = 20, intermediate: int = 4096) -> Path:
    """A randomly initialised Qwen2-architecture model of ~0.5B parameters, with the tiny offline tokenizer:
    no download anywhere. Greedy outputs are gibberish but deterministic, which is all the checks need."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rsi.models.tiny import build_tiny_model

    if (out / "config.json").exists():
        return out
    tok_dir = build_tiny_model(out.parent / "tokenizer-src")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=12, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True, torch_dtype="bfloat16",
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=0.05)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    print(f"model: Qwen2 {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params at {out}")
    return out


class Trainer:
    """Stands in for the DPO trainer's rank 0: holds the policy on its GPU, takes an optimizer-like step,
    writes the checkpoint (restarts and the fallback load from it) and pushes the weights into the pool."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(self.device)
        self.model_dir = model_dir

    def step_and_save(self, out: str) -> str:
        import torch
        from transformers import AutoTokenizer

        gen = torch.Generator(device=self.device).manual_seed(1)
        with torch.no_grad():
            for p in self.model.parameters():
                noise = torch.randn(p.shape, generator=gen, device=self.device, dtype=p.dtype)
                p.add_(noise * p.abs().mean() * 0.2)
        self.model.save_pretrained(out, safe_serialization=True)
        AutoTokenizer.from_pretrained(self.model_dir).save_pretrained(out)
        return out

    def push(self, pool: Any, version: int, checkpoint: str, backend: str) -> float:
        import ray

        from rsi.inference.weight_sync import push_weights

        t0 = time.perf_counter()
        if backend == "disk":
            got = ray.get(pool.update_weights.remote(checkpoint, version))
        else:
            got = push_weights(self.model, pool, version=version, checkpoint=checkpoint, backend=backend)
        assert got == version, got
        return time.perf_counter() - t0


def main() -> int:
    import ray
    import torch

    from rsi.inference import EngineSpec, PoolConfig, start_engine, start_pool

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model folder (built here if missing)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--sync", default="auto", choices=["auto", "nccl", "ipc", "disk"])
    args = ap.parse_args()

    gpus = torch.cuda.device_count()
    model = str(build_model(Path(args.model)))
    # One NCCL group cannot hold two ranks on one GPU: NCCL needs the trainer on a GPU of its own.
    sync = args.sync if args.sync != "auto" else ("nccl" if gpus >= args.replicas + 1 else "ipc")
    per_replica = 1.0 if gpus >= args.replicas + 1 else 0.4 / max(1, args.replicas // max(1, gpus))
    if gpus == 0:
        per_replica = 0.0
    util = 0.8 if per_replica == 1.0 else 0.25
    print(f"gpus={gpus} replicas={args.replicas} sync={sync} num_gpus/replica={per_replica} mem_util={util}")

    ray.init(num_gpus=gpus, include_dashboard=False)
    spec = EngineSpec(model_path=model, backend="vllm", dtype="bfloat16" if gpus else "float32",
                      max_model_len=2048, enforce_eager=True, threads=1, kv_cache_gb=0.25,
                      weight_transfer=None if sync == "disk" else sync,
                      engine_kwargs={"gpu_memory_utilization": util} if gpus else {})
    t0 = time.perf_counter()
    pool = start_pool(spec, PoolConfig(replicas=args.replicas, num_gpus=per_replica, num_cpus=1 if gpus else 0,
                                       max_in_flight=256))
    print(f"pool start s: {time.perf_counter() - t0:.1f}")

    prompts = [{"messages": [{"role": "user", "content": f"Task {i}: write a function that sorts words."}],
                "max_tokens": args.max_tokens, "temperature": 0.0} for i in range(args.prompts)]
    ray.get(pool.generate.remote(prompts[:4]))  # warm-up
    t0 = time.perf_counter()
    outs = ray.get([pool.generate.remote(prompts[i:i + 8]) for i in range(0, len(prompts), 8)])
    sec = time.perf_counter() - t0
    tokens = sum(o["num_tokens"] for batch in outs for o in batch)
    print(f"pool tokens/s: {tokens / sec:.0f} ({tokens} tokens, {sec:.2f} s)")

    trainer_gpu = 1.0 if sync == "nccl" else (0.1 if gpus else 0)
    trainer = ray.remote(Trainer).options(num_gpus=trainer_gpu, num_cpus=0 if not gpus else 1).remote(model)
    ckpt = ray.get(trainer.step_and_save.remote(str(Path(args.model).parent / "ckpt-v1")))
    push_s = ray.get(trainer.push.remote(pool, 1, ckpt, sync))
    print(f"swap s ({sync} push, {args.replicas} replicas, drain included): {push_s:.3f}")
    swapped = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts[:16]))]
    versions = {c["model_version"] for c in ray.get(pool.generate.remote(prompts[:4]))}
    t0 = time.perf_counter()
    ray.get(pool.update_weights.remote(ckpt, 2))
    disk_s = time.perf_counter() - t0
    print(f"swap s (disk reload_weights, same weights): {disk_s:.3f}")
    disk_swapped = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts[:16]))]
    for h in ray.get(pool.replica_handles.remote()):
        ray.kill(h)
    ray.kill(pool)
    ray.kill(trainer)

    fresh = start_engine(EngineSpec(**{**spec.__dict__, "model_path": ckpt, "weight_transfer": None}),
                         num_gpus=per_replica, num_cpus=0 if not gpus else 1)
    expected = [c["token_ids"] for c in ray.get(fresh.generate.remote(prompts[:16]))]
    ok_push, ok_disk = swapped == expected, disk_swapped == expected
    print(f"versions after push: {sorted(versions)}")
    print(f"greedy equal to a fresh engine: after {sync} push {ok_push}, after disk swap {ok_disk}")
    return 0 if ok_push and ok_disk and versions == {1} else 1


if __name__ == "__main__":
    raise SystemExit(main())
