"""The earlier Borda-based pair helpers, kept for callers not yet on `rsi.judging.decide` (weighted BT, trust)."""

from __future__ import annotations

from dataclasses import dataclass

from rsi.judging.ranking import borda_scores


@dataclass
class Pair:
    chosen: int  # index into the candidate list
    rejected: int
    margin: float  # normalised score gap in [0, 1]
    sources: list[int]  # indices of the rankings that decided it


def trust_weights(num_judgments: int, valid: list[bool], meta_rankings: list[list[int]]) -> list[float]:
    """Weight of each level-1 judgment from how the meta-judges ranked it: 1 + normalised Borda (1..2).

    Without a valid meta-ranking every valid judgment counts 1; an invalid judgment counts 0 either way.
    """
    if not meta_rankings:
        return [1.0 if v else 0.0 for v in valid]
    scores = borda_scores(meta_rankings, [1.0] * len(meta_rankings), num_judgments)
    top = max(scores) or 1.0
    return [(1.0 + s / top) if v else 0.0 for s, v in zip(scores, valid)]


def best_vs_worst(rankings: list[list[int]], weights: list[float], n: int) -> Pair | None:
    """The aggregated best against the aggregated worst; None when the judges give no gap at all."""
    used = [(r, w, i) for i, (r, w) in enumerate(zip(rankings, weights)) if r is not None and w > 0]
    if not used:
        return None
    scores = borda_scores([r for r, _, _ in used], [w for _, w, _ in used], n)
    best = max(range(n), key=lambda i: (scores[i], -i))
    worst = min(range(n), key=lambda i: (scores[i], -i))
    span = sum(w for _, w, _ in used) * (n - 1)
    margin = (scores[best] - scores[worst]) / span if span else 0.0
    if best == worst or margin <= 0:
        return None
    return Pair(best, worst, margin, [i for _, _, i in used])
