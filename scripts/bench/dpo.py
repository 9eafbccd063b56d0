"""DPO step cost: a bare in-process DPOTrainer (a) against `train_dpo` under Ray Train (b), per speed setting.

    python scripts/bench/dpo.py [--model smollm2|tiny|PATH] [--pairs DIR] [--steps 12] [--repeats 3]
                                [--variants before,after] [--modes a,s,b,r,t,q] [--batch 2]
    python scripts/bench/dpo.py --variants after,lora --modes s      # LoRA against full fine-tuning, no Ray

Both sides build the trainer the same way (`rsi.train.worker.build_trainer`: DPOConfig from the TrainConfig, the
trainer class, the speed settings), on the same pairs (weights dropped, so TRL's own shuffling orders them the
same on both) and seed; (b) adds only Ray Train (worker start, the table through the object store, the report).
Prints, per variant and side, medians over the repeats of: seconds per optimizer step (Trainer loop only; the
reference pass before it is shown apart as "prep s"), real tokens per second, the model FLOP/s and their share
of this machine's fp32 matmul peak (a `torch.mm` loop measured in this run), b/a, the mean loss and the
trainer's peak RSS (side a: this process' so far; s: its own process'; b: the Ray Train worker's).

Model FLOPs per step: the least a DPO step must compute (forward and backward of the body over each prompt once
and over both completions, the LM head over completion tokens, causal attention), the same for every variant,
so the share compares variants directly: recomputation, padding, a prompt run twice, a per-step reference
forward are work beyond it. Tokens per second count the real tokens of both rows (prompt twice).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Speed settings by name: "before" is the step as it was (reference model run every step, checkpointing on,
# padded batches), "after" the TrainConfig defaults; the ones between add the speed-ups one at a time.
VARIANTS: dict[str, dict] = {
    "before": {"precompute_ref": False, "gradient_checkpointing": "always", "padding_free": False},
    "ref_once": {"gradient_checkpointing": "always", "padding_free": False},
    "ref_once_auto_ckpt": {"padding_free": False},
    "unpadded": {"share_prompt": False},
    "after": {},
    # A LoRA adapter (train.lora's defaults: r 16 on every attention and MLP projection) on the "after" step
    "lora": {"lora": {"enabled": True}},
}


def train_config(name: str, **kw):
    from rsi.train import TrainConfig
    from rsi.train.config import LoraSettings

    settings = dict(VARIANTS[name])
    if "lora" in settings:
        settings["lora"] = LoraSettings(**settings["lora"])
    return TrainConfig(**kw, **settings)


def _write_pairs(folder: Path, n: int) -> None:
    """Pairs of uneven lengths, like the corpus' (long prompts, short completions), when no --pairs is given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": f"Write solve() for case {i}: sum the even numbers. "
                                                    + "Explain the edge cases. " * (5 + 40 * (i % 4))}],
             "chosen": [{"role": "assistant", "content": "def solve(nums):\n    return sum(x for x in nums "
                                                         "if x % 2 == 0)\n" * (1 + i % 3)}],
             "rejected": [{"role": "assistant", "content": f"The quick brown fox {i}." * (1 + i % 5)}]}
            for i in range(n)]
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")


def matmul_peak(seconds: float = 3.0, n: int = 2048) -> float:
    """Best fp32 FLOP/s of repeated n×n `torch.mm` on all of this process' threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - started))
    return best


def step_work(model, dataset, batch: int, max_length: int) -> tuple[float, float]:
    """(real tokens of both rows, model FLOPs) of an average step over TRL's tokenized `dataset`.

    The FLOPs are the least a DPO step needs (see the module docstring): forward and backward (6 per weight and
    token) of the body over the prompt once and both completions, of the LM head over the completion tokens, and
    causal attention (6 × layers × hidden × keys, per query).
    """
    import torch

    text = model.config.get_text_config()
    head = model.get_output_embeddings().weight.numel()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) - head
    attention = 6 * text.num_hidden_layers * text.hidden_size
    tokens = flops = 0.0
    rows = list(zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"]))
    for prompt_ids, *completions in rows:
        prompt = min(len(prompt_ids), max_length)
        flops += 6 * linear * prompt + attention * prompt**2 / 2
        for completion in completions:
            answer = max(0, min(prompt + len(completion), max_length) - prompt)
            tokens += prompt + answer
            flops += 6 * (linear + head) * answer + attention * answer * (prompt + answer / 2)
    return batch * tokens / len(rows), batch * flops / len(rows)


def measure_work(cfg, model_dir: str, table, work: Path) -> tuple[float, float]:
    """Tokens and FLOPs per step from TRL's own tokenization of the pairs (a trainer built, never trained)."""
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsi.train.data import table_to_dataset
    from rsi.train.worker import build_trainer

    cfg = dataclasses.replace(cfg, precompute_ref=False, padding_free=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer, decided = build_trainer(cfg, model, AutoTokenizer.from_pretrained(model_dir), table_to_dataset(table),
                                     str(work))
    result = step_work(model, trainer.train_dataset, cfg.per_device_batch_size, decided["max_length"])
    del trainer, model
    gc.collect()
    return result


def run_a(cfg, model_dir: str, table, work: Path) -> dict:
    """Bare: the trainer in this process, no Ray."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsi.train.data import table_to_dataset
    from rsi.train.speed import cpu_threads
    from rsi.train.worker import build_trainer

    torch.set_num_threads(cpu_threads(cfg.threads, 1))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if cfg.lora.enabled:
        from rsi.train.lora import policy_model

        model, _ = policy_model(model_dir, cfg.lora, torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    started = time.monotonic()
    trainer, decided = build_trainer(cfg, model, tokenizer, table_to_dataset(table), str(work))
    prep = time.monotonic() - started
    started = time.monotonic()
    output = trainer.train()
    seconds = time.monotonic() - started
    result = {"s_step": seconds / trainer.state.global_step, "prep": prep, "loss": output.training_loss,
              "ckpt": decided["gradient_checkpointing"], "rss_gb": peak_rss_gb()}
    del trainer, model
    gc.collect()
    return result


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_s(cfg, model_dir: str, table, work: Path) -> dict:
    """(a) in a fresh process of its own (no Ray): its peak RSS is this trainer's alone, not the largest of every
    side run so far in this one."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_a, (cfg, model_dir, table, work))


def run_b(cfg, model_dir: str, pairs: Path, work: Path) -> dict:
    """Under Ray Train: `train_dpo` as the loop calls it."""
    from rsi.train import train_dpo

    r = train_dpo(str(pairs), model_dir, str(work), cfg, weight_column=None)
    return {"s_step": r.metrics["seconds_per_step"], "prep": r.seconds - r.metrics["train_seconds"],
            "loss": r.loss, "ckpt": r.metrics["decided/gradient_checkpointing"],
            "rss_gb": r.metrics.get("peak_rss_gb", float("nan"))}


# Ray Train's periodic work while a run is in flight: the controller polls the workers (every 2 s), watches for
# preemption (5 s), reconciles its state actor (30 s) and pushes metrics. Side (q) runs (b) with all of it
# slowed or off, to measure what it costs a CPU trainer whose OpenMP team holds every core.
QUIET_RAY_TRAIN = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "10", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                   "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}


def run_q(cfg, model_dir: str, pairs: Path, work: Path) -> dict:
    """(b) with Ray Train's background polling quieted (QUIET_RAY_TRAIN; Ray Train hands these variables from
    the driver to its controller and workers at each run's start)."""
    saved = {k: os.environ.get(k) for k in QUIET_RAY_TRAIN}
    os.environ.update(QUIET_RAY_TRAIN)
    try:
        return run_b(cfg, model_dir, pairs, work)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_r(cfg, model_dir: str, table, work: Path) -> dict:
    """The bare trainer of (a) in a plain Ray task, started as Ray Train starts its workers (one CPU, normal
    priority), without Ray Train: separates what a Ray worker process costs from what Ray Train adds."""
    import ray

    task = ray.remote(num_cpus=1, runtime_env={"env_vars": {"RAY_worker_niceness": "0"}})(run_a)
    return ray.get(task.remote(cfg, model_dir, table, work))


def run_t(cfg, model_dir: str, table, work: Path) -> dict:
    """As (r), with the trainer in a thread of a task started with `train_dpo`'s worker environment, as Ray Train
    runs its loop: what the thread alone costs."""
    import ray

    from rsi.train.dpo import worker_env

    def in_thread(cfg, model_dir: str, table, work: Path) -> dict:
        import threading

        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(run_a(cfg, model_dir, table, work)))
        thread.start()
        thread.join()
        return out

    task = ray.remote(num_cpus=1, runtime_env={"env_vars": worker_env(cfg)})(in_thread)
    return ray.get(task.remote(cfg, model_dir, table, work))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", help="smollm2, tiny, or an HF folder")
    ap.add_argument("--pairs", default=None, help="preferences folder (default: synthetic pairs)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--variants", default="before,after",
                    help=f"comma-separated of {','.join(VARIANTS)}; NAME:b runs that one on side b only")
    ap.add_argument("--modes", default="a,b",
                    help="a: bare in-process, s: bare in a fresh process (its own peak RSS; no Ray), "
                         "b: under Ray Train, r: the bare trainer in a plain Ray task, "
                         "t: the same in a thread of a task with train_dpo's worker environment, "
                         "q: b with Ray Train's background polling slowed or off")
    args = ap.parse_args()

    import ray
    import torch

    from rsi.train import TrainConfig, load_preferences
    from rsi.train.data import prepare_preferences

    with tempfile.TemporaryDirectory(prefix="rsi-bench-dpo-") as tmp:
        root = Path(tmp)
        if args.model == "smollm2":
            from rsi.models import ensure_smollm2
            model_dir = str(ensure_smollm2(None))
        elif args.model == "tiny":
            from rsi.models.tiny import build_tiny_model
            model_dir = str(build_tiny_model(root / "tiny"))
        else:
            model_dir = args.model
        pairs = Path(args.pairs) if args.pairs else root / "pairs"
        if not args.pairs:
            _write_pairs(pairs, args.steps * args.batch)
        table, _ = prepare_preferences(load_preferences(pairs), None)
        torch.set_num_threads(os.cpu_count() or 1)
        peak = matmul_peak()
        print(f"fp32 torch.mm peak: {peak / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)

        modes = args.modes.split(",")
        plan = [(spec.split(":")[0], spec.split(":")[1].split("+") if ":" in spec else modes)
                for spec in args.variants.split(",")]
        if any(set(m) & {"b", "r", "t", "q"} for _, m in plan):
            ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False)
        runs: dict[tuple[str, str], list[dict]] = {}
        tokens, flops = measure_work(TrainConfig(per_device_batch_size=args.batch), model_dir, table, root / "work")
        # LoRA's FLOP/s count the full model's minimum work, so its share shows the step's speed, not utilisation
        for repeat in range(args.repeats):
            for name, sides in plan:
                cfg = train_config(name, max_steps=args.steps, per_device_batch_size=args.batch,
                                   learning_rate=5e-6)
                for mode in sides:
                    out = root / f"{name}-{mode}-{repeat}"
                    if mode in ("b", "q"):
                        r = {"b": run_b, "q": run_q}[mode](cfg, model_dir, pairs, out)
                    else:
                        r = {"a": run_a, "s": run_s, "r": run_r, "t": run_t}[mode](cfg, model_dir, table, out)
                    runs.setdefault((name, mode), []).append(r)
                    print(f"  {name:22} {mode} repeat {repeat}: {r['s_step']:.2f} s/step, prep {r['prep']:.1f} s, "
                          f"loss {r['loss']:.5f}, peak RSS {r['rss_gb']:.2f} GB", flush=True)
        if ray.is_initialized():
            ray.shutdown()

    print(f"\nmodel {Path(model_dir).name}, {len(table)} pairs, {args.steps} steps, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, medians of {args.repeats}; peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'variant':22} {'side':4} {'s/step':>8} {'tok/s':>8} {'GFLOP/s':>8} {'peak %':>7} {'b/a':>6} "
          f"{'prep s':>7} {'ckpt':>5} {'loss':>9} {'vs first':>8} {'RSS GB':>7}")
    first: dict[str, float] = {}
    for name, sides in plan:
        a_step = statistics.median(r["s_step"] for r in runs[(name, "a")]) if (name, "a") in runs else None
        for mode in sides:
            rs = runs[(name, mode)]
            s = statistics.median(r["s_step"] for r in rs)
            first.setdefault(mode, s)
            ratio = f"{a_step / s:6.3f}" if mode != "a" and a_step else f"{'':6}"
            print(f"{name:22} {mode:4} {s:8.2f} {tokens / s:8.0f} {flops / s / 1e9:8.1f} "
                  f"{100 * flops / s / peak:6.1f}% {ratio} {statistics.median(r['prep'] for r in rs):7.1f} "
                  f"{'on' if rs[0]['ckpt'] else 'off':>5} {statistics.median(r['loss'] for r in rs):9.5f} "
                  f"{s / first[mode]:8.2f} {max(r['rss_gb'] for r in rs):7.2f}")
    print("b/a: (a) s/step over (b), (r) or (t) s/step, the throughput relative to bare (1.0: no cost); "
          "vs first: s/step over the first variant's on the same side.")


if __name__ == "__main__":
    main()
