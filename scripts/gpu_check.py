"""GPU check of the serving path (run by scripts/gpu_check.sh): a 2-replica vLLM pool on one or more GPUs,
tokens/s, a swap to a checkpoint written by a separate training process (vLLM reload_weights in place, tied
head refreshed, prefix cache reset), the swapped pool's greedy tokens against a fresh engine on the same
weights, and a swap back to the first weights against the pool's own greedy tokens before the swap. Prints one
line per figure and exits non-zero on a failed check.

    python scripts/gpu_check.py --model DIR [--replicas 2] [--prompts 64] [--max-tokens 128]

On a machine without a GPU the same steps run on CPU: a dry run of this script's plumbing, not of the GPU path.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

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
    """Stands in for the DPO trainer: a separate process that loads the policy, takes an optimizer-like step
    and writes the checkpoint the pool swaps to (as the loop's trainer does after each DPO phase)."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM

        # On the CPU: the replicas may hold whole GPUs, and a 0.5B step and save take seconds there.
        self.device = "cpu"
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


def main() -> int:
    import ray
    import torch

    from rsi.inference import EngineSpec, PoolConfig, start_engine, start_pool

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model folder (built here if missing)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()

    gpus = torch.cuda.device_count()
    model = str(build_model(Path(args.model)))
    per_replica = 1.0 if gpus >= args.replicas else 0.4 / max(1, args.replicas // max(1, gpus))
    if gpus == 0:
        per_replica = 0.0
    util = 0.8 if per_replica == 1.0 else 0.25
    print(f"gpus={gpus} replicas={args.replicas} num_gpus/replica={per_replica} mem_util={util}")

    ray.init(num_gpus=gpus, include_dashboard=False)
    spec = EngineSpec(model_path=model, backend="vllm", dtype="bfloat16" if gpus else "float32",
                      max_model_len=2048, enforce_eager=True, threads=1, kv_cache_gb=0.25,
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
    before = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts[:16]))]

    trainer = ray.remote(Trainer).options(num_gpus=0, num_cpus=0 if not gpus else 1).remote(model)
    ckpt = ray.get(trainer.step_and_save.remote(str(Path(args.model).parent / "ckpt-v1")))
    ray.kill(trainer)
    t0 = time.perf_counter()
    got = ray.get(pool.update_weights.remote(ckpt, 1))
    swap_s = time.perf_counter() - t0
    print(f"swap s (reload_weights from disk, {args.replicas} replicas, drain included): {swap_s:.3f}")
    swapped = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts[:16]))]
    versions = {c["model_version"] for c in ray.get(pool.generate.remote(prompts[:4]))}
    ray.get(pool.update_weights.remote(model, 2))  # and back: the first weights must answer as before
    back = [c["token_ids"] for c in ray.get(pool.generate.remote(prompts[:16]))]
    for h in ray.get(pool.replica_handles.remote()):
        ray.kill(h)
    ray.kill(pool)

    fresh = start_engine(dataclasses.replace(spec, model_path=ckpt), num_gpus=per_replica,
                         num_cpus=0 if not gpus else 1)
    expected = [c["token_ids"] for c in ray.get(fresh.generate.remote(prompts[:16]))]
    ok_swap, ok_back = swapped == expected, back == before
    changed = swapped != before  # the new weights must answer differently, or the checks above prove nothing
    print(f"versions after the swap: {sorted(versions)} (swap returned {got})")
    print(f"greedy equal to a fresh engine after the swap: {ok_swap}; new weights answer differently: {changed}")
    print(f"greedy equal to the first weights after swapping back: {ok_back}")
    return 0 if ok_swap and ok_back and changed and got == 1 and versions == {1} else 1


if __name__ == "__main__":
    raise SystemExit(main())
