"""vLLM vs transformers backend on the same batched greedy workload, in one process, interleaved repeats.
Prints generated tokens/s of each, per prompt count, and the ratio vllm/hf (medians).

    .venv/bin/python scripts/bench/backends.py [--model smollm2-135m] [--prompts 32 8] [--max-tokens 32]
        [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from rsi.inference.engine import EngineActor, EngineSpec  # noqa: E402
from rsi.models import resolve_model_path  # noqa: E402


def requests(n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"Write Python function number {i} that validates input."}],
             "max_tokens": max_tokens, "temperature": 0.0} for i in range(n)]


def rate(engine: EngineActor, reqs: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    tokens = sum(c["num_tokens"] for c in engine.generate(reqs))
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, nargs="+", default=[32, 8])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    path = resolve_model_path(args.model, None)
    engines = {b: EngineActor(EngineSpec(model_path=path, backend=b, dtype="float32", kv_cache_gb=0.5,
                                         max_model_len=2048, threads=args.threads))
               for b in ("vllm", "hf")}
    table = Table(title=f"vllm vs hf · {args.model} fp32 · {args.max_tokens} new tokens · threads={args.threads} "
                        f"(medians of {args.repeats})")
    for col in ("prompts", "vllm tok/s", "hf tok/s", "vllm/hf", "vllm runs", "hf runs"):
        table.add_column(col, justify="right")
    for n in args.prompts:
        reqs = requests(n, args.max_tokens)
        for e in engines.values():  # warm-up: first-call allocations and kernel selection
            e.generate(reqs[:2])
        runs: dict[str, list[float]] = {"vllm": [], "hf": []}
        for _ in range(args.repeats):  # interleaved, so drifting load hits both alike
            for b, e in engines.items():
                runs[b].append(rate(e, reqs))
        v, h = statistics.median(runs["vllm"]), statistics.median(runs["hf"])
        table.add_row(str(n), f"{v:.1f}", f"{h:.1f}", f"{v / h:.2f}×", " ".join(f"{x:.0f}" for x in runs["vllm"]),
                      " ".join(f"{x:.0f}" for x in runs["hf"]))
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
