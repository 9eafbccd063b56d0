"""DPO step time under Ray Train, per DeepSpeed mode, with the ratio to the plain (DDP) run.

    python scripts/bench/train_step.py [--model PATH] [--steps 8] [--workers 1] [--modes none,zero2] [--lora]

Without --model it builds the tiny offline model. Prints seconds/step measured inside the worker (Trainer
loop only) and the whole `train_dpo` wall time (worker start, tokenising, save included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _write_pairs(folder: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": f"Write solve() for case {i}: sum the even numbers."}],
             "chosen": [{"role": "assistant", "content": "def solve(nums):\n    return sum(x for x in nums "
                                                         "if x % 2 == 0)\n"}],
             "rejected": [{"role": "assistant", "content": f"The quick brown fox {i}."}],
             "weight": 1.0} for i in range(n)]
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--modes", default="none,zero2")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--lora", action="store_true", help="train.lora: a LoRA adapter (r 16) instead of every weight")
    args = ap.parse_args()

    import ray

    from rsi.models.tiny import build_tiny_model
    from rsi.train import TrainConfig, train_dpo
    from rsi.train.config import LoraSettings
    from rsi.train.lora import is_adapter

    with tempfile.TemporaryDirectory(prefix="rsi-bench-train-") as tmp:
        root = Path(tmp)
        model = args.model or str(build_tiny_model(root / "tiny"))
        _write_pairs(root / "prefs", args.steps * args.batch * args.workers)
        ray.init(num_cpus=max(4, args.workers * 2))
        rows = []
        for mode in args.modes.split(","):
            cfg = TrainConfig(deepspeed=mode, num_workers=args.workers, use_gpu=args.gpu, max_steps=args.steps,
                              per_device_batch_size=args.batch, learning_rate=1e-4 if args.lora else 1e-5,
                              lora=LoraSettings(enabled=args.lora))
            r = train_dpo(str(root / "prefs"), model, str(root / f"out-{mode}"), cfg)
            if args.lora and not is_adapter(r.checkpoint):
                raise SystemExit(f"{mode}: train.lora saved no adapter folder at {r.checkpoint}")
            rows.append((mode, r.metrics["seconds_per_step"], r.seconds, r.loss, r.metrics.get("peak_rss_gb")))
        ray.shutdown()

    base = rows[0][1]
    kind = "lora" if args.lora else "full"
    print(f"{'mode':8} {'weights':7} {'s/step':>8} {'ratio':>6} {'run s':>7} {'loss':>8} {'RSS GB':>7}")
    for mode, sps, wall, loss, rss in rows:
        print(f"{mode:8} {kind:7} {sps:8.3f} {sps / base:6.2f} {wall:7.1f} {loss:8.4f} {rss or float('nan'):7.2f}")


if __name__ == "__main__":
    main()
