"""Corpus benchmark: peak memory of the streaming writer at 10k and 100k preference rows (the ratio must stay
≤ 1.2: the writer streams, it does not accumulate), and the time to aggregate 1M judgments (trust weights and
weighted Bradley–Terry over every candidate set, batched).

    .venv/bin/python scripts/bench/corpus.py [--rows 10000 100000] [--judgments 1000000]

Each write runs in a fresh child process so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

ROWS_PER_CHAIN = 10  # preference rows per chain: a chain is the writer's unit of commit


def _write_child(rows: int, out: str) -> None:
    import resource

    from rsi.corpus.ids import content_id
    from rsi.corpus.stream import CorpusWriter

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prompt = [{"role": "system", "content": "You are a careful programmer."},
              {"role": "user", "content": "Write a function that validates ISO dates. " * 8}]
    w = CorpusWriter(out)
    t0 = time.perf_counter()
    for s in range(rows // ROWS_PER_CHAIN):
        chain = f"chain{s}"
        prefs = [{
            "id": content_id("preference", chain=chain, k=k), "iteration": 0, "family": "programming",
            "step": "solve", "level": 1 + k % 2, "prompt": prompt,
            "chosen": [{"role": "assistant", "content": f"def f(x):\n    return {s} + {k}  # chosen\n" * 6}],
            "rejected": [{"role": "assistant", "content": f"def f(x):\n    return {s} - {k}  # rejected\n" * 6}],
            "chosen_id": content_id("p", s=s, k=k), "rejected_id": content_id("p", s=s, k=-k),
            "margin": 0.5, "weight": 0.5, "source_ids": [content_id("j", s=s, k=k)],
        } for k in range(ROWS_PER_CHAIN)]
        w.add_chain(chain, {"preferences": prefs})
    w.close(iteration=0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rows": w.rows()["preferences"], "peak_kib": peak, "baseline_kib": base,
                      "seconds": seconds}))


def _measure_write(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, __file__, "--child", str(rows), d], check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def aggregate_judgments(total: int, n: int = 4, per_set: int = 4, chunk_sets: int = 50_000) -> dict:
    """Trust weights (2 consensus rounds) and weighted Bradley–Terry for `total` judgments in sets of
    `per_set` listwise rankings of n candidates, processed `chunk_sets` sets at a time (bounded memory)."""
    import numpy as np

    from rsi.judging.trust import consensus_weights

    sets = total // per_set
    rng = np.random.default_rng(0)
    t_agg = 0.0
    for start in range(0, sets, chunk_sets):
        s = min(chunk_sets, sets - start)
        quality = rng.normal(size=(s, n))
        noisy = np.repeat(quality, per_set, axis=0) + rng.normal(0, 1.0, size=(s * per_set, n))
        rankings = np.argsort(-noisy, axis=1)
        set_idx = np.repeat(np.arange(s), per_set)
        t0 = time.perf_counter()
        consensus_weights(rankings, set_idx, np.ones(len(rankings)), s, n)
        t_agg += time.perf_counter() - t0
    return {"judgments": sets * per_set, "sets": sets, "candidates": n, "seconds": t_agg,
            "judgments_per_s": sets * per_set / t_agg}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _write_child(int(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs=2, default=[10_000, 100_000])
    ap.add_argument("--judgments", type=int, default=1_000_000)
    args = ap.parse_args()
    small, large = (_measure_write(r) for r in args.rows)
    for r in (small, large):
        print(f"write {r['rows']:>7} preference rows: peak RSS {r['peak_kib'] / 1024:7.1f} MiB "
              f"(after imports {r['baseline_kib'] / 1024:.1f} MiB), {r['seconds']:.1f} s")
    ratio = large["peak_kib"] / small["peak_kib"]
    print(f"peak RSS ratio {large['rows']}/{small['rows']} rows: {ratio:.3f} (must be <= 1.2)")
    agg = aggregate_judgments(args.judgments)
    print(f"aggregate {agg['judgments']} judgments ({agg['sets']} sets of {agg['candidates']} candidates, trust "
          f"+ weighted BT): {agg['seconds']:.1f} s, {agg['judgments_per_s']:.0f} judgments/s")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
