"""Proportions and paired comparisons for held-out evaluations (numpy only, seeded, so a report is reproducible).

A task's metric gets a Wilson interval (well behaved at 0 and 1, where the normal approximation collapses to a
point); two model versions scored on the same items are compared item by item: a paired bootstrap of the
difference of means, and exact McNemar on the items where exactly one version was right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Z95 = 1.959964  # two-sided 95% normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (Wilson 1927; Newcombe 1998, method 3)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k=0 (k=n) the lower (upper) bound is exactly 0 (1); rounding would leave 1e-17 or 0.9999999999999999.
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return (lo, hi)


def _percentile_ci(stats: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_ci(values: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean over items. No items: (0.0, 0.0)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(reps, x.size))
    return _percentile_ci(x[idx].mean(axis=1))


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a), resampling items (the pairs stay together, which is what makes
    the comparison of two versions on the same items much tighter than two independent intervals)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} and {y.size}")
    return bootstrap_ci(y - x, reps=reps, seed=seed)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under H0 the b + c discordant pairs split Binomial(b + c, 1/2);
    p = P(as or more lopsided), doubled, capped at 1 (the usual two-sided exact binomial test)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Exact integer arithmetic: no underflow of 0.5**n for large n until the final division.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def compare_items(
    items_a: Sequence[dict[str, Any]], items_b: Sequence[dict[str, Any]], only: set[str] | None = None
) -> dict[str, Any]:
    """Paired comparison of two versions' item records ({"id", "correct"}): items both hold (optionally only
    ids in `only`, e.g. one half of the set), delta = mean(correct_b) - mean(correct_a)."""
    by_id_a = {str(it["id"]): float(it["correct"]) for it in items_a}
    by_id_b = {str(it["id"]): float(it["correct"]) for it in items_b}
    ids = sorted(by_id_a.keys() & by_id_b.keys())  # sorted: the bootstrap sees the same order every run
    if only is not None:
        ids = [i for i in ids if i in only]
    if not ids:
        return {"delta": 0.0, "ci95": (0.0, 0.0), "p": 1.0, "n": 0}
    a = np.array([by_id_a[i] for i in ids])
    b = np.array([by_id_b[i] for i in ids])
    # McNemar counts the discordant pairs: b_only = right in B only, a_only = right in A only.
    a_only = int(np.sum((a > 0.5) & (b <= 0.5)))
    b_only = int(np.sum((b > 0.5) & (a <= 0.5)))
    return {
        "delta": float(b.mean() - a.mean()),
        "ci95": paired_bootstrap(a, b),
        "p": mcnemar_exact(a_only, b_only),
        "n": len(ids),
    }
