"""One candidate set's verdict: judge weights, aggregate scores with uncertainty, and the preference pairs.

`decide_rows` (over the pipeline's dict rows) is the entry `rsi.pipeline.decisions.decide_set` calls, once per
set. Levels are generic: level 1 ranks the
candidates, level L+1 ranks the level-L judgments of the same set (meta-judging at any depth). Trust flows
down: the top level is weighted by consensus alone, every level below by the aggregate of the level above
(and level 1 also by its agreement with execution, where procedural scores exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsi.judging.aggregate import borda, pad_rankings
from rsi.judging.config import JudgingConfig
from rsi.judging.trust import consensus_weights, meta_factor, tau_factor, truth_tau


@dataclass
class Candidate:
    id: str
    length: int  # characters (or tokens) of the text: length control prefers the shorter of near-equals
    procedural: float | None = None  # execution score (e.g. share of tests passed); None where none exists
    key: str | None = None  # hash of the text: two candidates with the same key never form a pair


@dataclass
class Judgment:
    id: str
    ranking: list[int] | None  # indices into the judged items, best first; None when the answer was invalid
    presented: list[int]  # the order the items were shown in


@dataclass
class Pair:
    level: int  # 0: candidates (a performance pair); L ≥ 1: two level-L judgments (a judgement pair)
    chosen: int  # index into that level's items
    rejected: int
    margin: float  # in [0, 1]
    source_ids: list[str]
    origin: str  # judges | procedural


@dataclass
class Decision:
    weights: list[list[float]]  # per judging level (index 0 = level 1), one weight per judgment
    scores: list[list[float]]  # per item level (0 = candidates, L = level-L judgments): aggregate θ
    pairs: list[Pair] = field(default_factory=list)


def _fit_level(judgments: list[Judgment], n: int, base: np.ndarray, cfg: JudgingConfig,
               truth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weights, θ, SE and truth tau for one level's judgments of n items."""
    rankings = pad_rankings([j.ranking for j in judgments])
    set_idx = np.zeros(len(judgments), dtype=np.int64)
    valid = np.array([j.ranking is not None for j in judgments], dtype=np.float64)
    tau_truth = np.full(len(judgments), np.nan)
    if truth is not None:
        tau_truth = truth_tau(rankings, set_idx, truth[None, :])
    prior = valid * base * tau_factor(tau_truth)
    weights, fit, _ = consensus_weights(rankings, set_idx, prior, 1, n, rounds=cfg.consensus_rounds,
                                        prior=cfg.bt_prior, iterations=cfg.bt_iterations)
    theta, se = fit.theta[0], fit.se[0]
    if cfg.aggregator == "borda":
        theta = borda(rankings, set_idx, weights, 1, n)[0]
        theta = (theta - theta.mean()) / max(valid.sum(), 1.0)
    return weights, theta, se, tau_truth


def _margin(delta: float) -> float:
    return float(2.0 / (1.0 + np.exp(-delta)) - 1.0)


def _judge_pair(level: int, theta: np.ndarray, se: np.ndarray, lengths: list[int] | None, keys: list[str | None],
                sources: list[str], cfg: JudgingConfig) -> Pair | None:
    """Best vs worst by θ; with length control the shortest item within the top's uncertainty is chosen."""
    n = len(theta)
    top = int(np.argmax(theta))
    rejected = min(range(n), key=lambda i: (theta[i], -(lengths[i] if lengths else 0)))
    chosen = top
    if cfg.length_control and lengths is not None:
        # the rejected one never competes: with two candidates within each other's error bars, length control
        # must not turn the pair around or cancel it
        near = [i for i in range(n) if i != rejected
                and theta[top] - theta[i] <= cfg.length_tolerance * np.hypot(se[top], se[i])]
        chosen = min(near, key=lambda i: (lengths[i], -theta[i])) if near else top
    if chosen == rejected or (keys[chosen] is not None and keys[chosen] == keys[rejected]):
        return None
    margin = _margin(theta[chosen] - theta[rejected])
    if margin < cfg.min_margin:
        return None
    return Pair(level, chosen, rejected, margin, sources, "judges")


def _procedural_pair(scores: list[float], theta: np.ndarray, lengths: list[int] | None,
                     keys: list[str | None], cfg: JudgingConfig) -> Pair | None:
    """Execution decides: best vs worst procedural score, the judges' θ and then length break ties."""
    n = len(scores)
    length = lengths or [0] * n
    chosen = max(range(n), key=lambda i: (scores[i], theta[i], -length[i]))
    rejected = min(range(n), key=lambda i: (scores[i], theta[i], -length[i]))
    gap = scores[chosen] - scores[rejected]
    span = max(scores) - min(scores)
    if gap <= 0 or (keys[chosen] is not None and keys[chosen] == keys[rejected]):
        return None
    margin = gap / max(span, abs(max(scores)), 1e-9)
    return Pair(0, chosen, rejected, float(min(1.0, margin)), [], "procedural") if margin >= cfg.min_margin else None


def _questions(judged: list[Judgment]) -> list[list[int]]:
    """Indices of judgments grouped by the question they answer (the items they were shown). A judgement pair
    must share its prompt, as DPO needs: listwise, every judgment of a set answers the same question; pairwise,
    only the judgments of the same two candidates do. Groups of one are left out."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, j in enumerate(judged):
        groups.setdefault(tuple(sorted(j.presented)), []).append(k)
    return [g for g in groups.values() if len(g) >= 2]


def _widest_gap(score: np.ndarray, judged: list[Judgment]) -> tuple[int | None, int | None]:
    """Best and worst judgment by `score` within the question where they differ most."""
    best = worst = None
    for members in _questions(judged):
        hi = max(members, key=lambda k: score[k])
        lo = min(members, key=lambda k: score[k])
        if best is None or score[hi] - score[lo] > score[best] - score[worst]:
            best, worst = hi, lo
    return best, worst


def decide_pairs(candidates: list[Candidate], levels: list[list[Judgment]],
                 cfg: JudgingConfig | None = None) -> Decision:
    """Weights for every judgment, aggregate θ ± SE per item, and one pair per level (per question, pairwise) that
    has a clear gap.

    levels[0] ranks `candidates`; levels[L] ranks the judgments of levels[L-1]. Procedural scores, where every
    candidate has one and they differ, decide the performance pair and the better level-1 judgment (its
    agreement with execution), overriding the judges.
    """
    c = cfg or JudgingConfig()
    truth_vals = [x.procedural for x in candidates]
    has_truth = all(v is not None for v in truth_vals) and len(set(truth_vals)) > 1
    truth = np.array(truth_vals, dtype=np.float64) if has_truth else None

    depth = len(levels)
    weights: list[np.ndarray] = [np.zeros(0)] * depth
    thetas: list[np.ndarray] = [np.zeros(0)] * (depth + 1)
    ses: list[np.ndarray] = [np.zeros(0)] * (depth + 1)
    tau_truth = np.full(len(levels[0]) if levels else 0, np.nan)
    # top-down: level L's judgments are the items of level L+1, whose fit gives their meta factor
    base_next: np.ndarray | None = None
    for lvl in range(depth - 1, -1, -1):
        items = len(candidates) if lvl == 0 else len(levels[lvl - 1])
        base = np.ones(len(levels[lvl])) if base_next is None else base_next
        w, theta, se, tt = _fit_level(levels[lvl], items, base, c, truth if lvl == 0 else None)
        weights[lvl], thetas[lvl], ses[lvl] = w, theta, se
        if lvl == 0:
            tau_truth = tt
        # meta factor for the level below; an item level judged by nobody valid keeps factor 1
        base_next = meta_factor(theta) if lvl > 0 and w.sum() > 0 else None

    pairs: list[Pair] = []
    lengths = [x.length for x in candidates]
    keys = [x.key for x in candidates]
    theta0 = thetas[0] if levels else np.zeros(len(candidates))
    pair = _procedural_pair(truth_vals, theta0, lengths, keys, c) if has_truth else None
    if pair is None and levels:
        src = [j.id for j, w in zip(levels[0], weights[0]) if w > 0]
        pair = _judge_pair(0, thetas[0], ses[0], lengths, keys, src, c)
    if pair:
        pairs.append(pair)
    for lvl in range(1, depth + 1):
        judged = levels[lvl - 1]
        if lvl == 1 and has_truth and np.isfinite(tau_truth).sum() >= 2:
            # execution ranks the level-1 judgments: the most accurate against the least (of one question)
            acc = np.nan_to_num(tau_truth, nan=-2.0)
            best, worst = _widest_gap(acc, judged)
            if best is not None and acc[best] > acc[worst]:
                pairs.append(Pair(1, best, worst, float(min(1.0, (acc[best] - acc[worst]) / 2)), [], "procedural"))
            continue
        if lvl >= depth:
            break  # nobody judged the top level's judgments
        if (weights[lvl] > 0).sum() == 0:
            continue
        src = [j.id for j, w in zip(levels[lvl], weights[lvl]) if w > 0]
        for members in _questions(judged):
            sub = _judge_pair(lvl, thetas[lvl][members], ses[lvl][members], None, [None] * len(members), src, c)
            if sub:  # back from positions within the question to indices of the level
                pairs.append(Pair(lvl, members[sub.chosen], members[sub.rejected], sub.margin, src, sub.origin))

    return Decision(
        weights=[list(map(float, w)) for w in weights],
        scores=[list(map(float, t)) for t in thetas[:depth]],
        pairs=pairs,
    )



def decide_rows(candidates: list[dict[str, Any]], levels: list[list[dict[str, Any]]],
                cfg: JudgingConfig | None = None, *, text_key: str = "completion") -> Decision:
    """`decide_pairs` over the pipeline's dict rows: candidates carry id, the text under `text_key` and
    procedural_score; judgments carry id, ranking (None when invalid) and presented_order."""
    import hashlib

    cands = [Candidate(str(c["id"]), len(c.get(text_key) or ""), c.get("procedural_score"),
                       hashlib.sha256((c.get(text_key) or "").encode()).hexdigest())
             for c in candidates]
    judged = [[Judgment(str(j["id"]), j.get("ranking"), list(j.get("presented_order") or []))
               for j in level] for level in levels]
    return decide_pairs(cands, judged, cfg)
