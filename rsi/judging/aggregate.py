"""Aggregation of many rankings of a candidate set: weighted Bradley–Terry (maximum likelihood, with a
standard error per candidate) and Borda as the cheap baseline.

Arrays carry a leading set axis and the work is a few numpy operations per call, whatever the number of sets;
`rsi.judging.decide` calls it with one set at a time, as each chain finishes. A ranking of k items (k = n
listwise, 2 pairwise, anything in between) counts as its k(k-1)/2 pairwise wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = -1  # fills rankings shorter than the widest one (pairwise rows, invalid answers)


@dataclass
class Fit:
    """Log-strengths (centred per set) and their standard errors; shapes (sets, n)."""

    theta: np.ndarray
    se: np.ndarray


def pad_rankings(rankings: list[list[int] | None]) -> np.ndarray:
    """List of rankings (None = invalid) → int array (J, k) padded with PAD; an invalid row is all PAD."""
    width = max((len(r) for r in rankings if r), default=2)
    out = np.full((len(rankings), width), PAD, dtype=np.int64)
    for j, r in enumerate(rankings):
        if r:
            out[j, : len(r)] = r
    return out


def _position_pairs(width: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.triu_indices(width, k=1)
    return a, b


@dataclass
class Comparisons:
    """Every pairwise comparison the rankings imply, flattened once: (judgment, winner, loser) triples.

    Re-weighting rounds change only the weights, so the win matrices and agreement taus of later rounds are
    single bincounts over these arrays instead of a rebuild from the rankings.
    """

    judgment: np.ndarray  # (C,) index of the ranking each comparison comes from
    flat: np.ndarray  # (C,) set * n * n + winner * n + loser
    set_winner: np.ndarray  # (C,) set * n + winner: index into flattened (sets, n) scores
    set_loser: np.ndarray  # (C,)
    num_judgments: int
    num_sets: int
    n: int

    @classmethod
    def from_rankings(cls, rankings: np.ndarray, set_idx: np.ndarray, num_sets: int, n: int) -> Comparisons:
        a, b = _position_pairs(rankings.shape[1])
        win, lose = rankings[:, a], rankings[:, b]  # (J, P)
        ok = (win >= 0) & (lose >= 0)
        jdx = np.broadcast_to(np.arange(len(rankings))[:, None], win.shape)[ok]
        sets = np.broadcast_to(set_idx[:, None], win.shape)[ok].astype(np.int64)
        w, lo = win[ok].astype(np.int64), lose[ok].astype(np.int64)
        return cls(jdx, sets * n * n + w * n + lo, sets * n + w, sets * n + lo, len(rankings), num_sets, n)

    def wins(self, weights: np.ndarray) -> np.ndarray:
        """W[s, i, j] = total weight of judgments of set s that put i above j."""
        w = weights[self.judgment].astype(np.float64)
        out = np.bincount(self.flat, weights=w, minlength=self.num_sets * self.n * self.n)
        return out.reshape(self.num_sets, self.n, self.n)

    def tau(self, reference: np.ndarray) -> np.ndarray:
        """Kendall tau of each ranking against reference scores (sets, n) of its set, over the pairs the
        reference separates; NaN where none does."""
        ref = reference.reshape(-1)
        sign = np.sign(ref[self.set_winner] - ref[self.set_loser])
        agree = np.bincount(self.judgment, weights=sign, minlength=self.num_judgments)
        total = np.bincount(self.judgment, weights=np.abs(sign), minlength=self.num_judgments)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, agree / np.maximum(total, 1), np.nan)


def win_matrix(rankings: np.ndarray, set_idx: np.ndarray, weights: np.ndarray, num_sets: int, n: int) -> np.ndarray:
    """W[s, i, j] = total weight of judgments of set s that put i above j.

    rankings: (J, k) candidate indices best first, PAD where absent; set_idx: (J,); weights: (J,).
    Built with one bincount over flat indices: linear in the number of pairwise comparisons.
    """
    return Comparisons.from_rankings(rankings, set_idx, num_sets, n).wins(weights)


def bradley_terry(wins: np.ndarray, prior: float = 0.1, iterations: int = 25, tol: float = 1e-6,
                  init: np.ndarray | None = None) -> Fit:
    """Maximum a-posteriori Bradley–Terry per set by Newton's method.

    The small Gaussian prior (precision `prior`) keeps strengths finite when a candidate wins every
    comparison and makes the Hessian invertible; its inverse gives the standard errors. Sets whose candidates
    were never compared stay at 0 with the prior's standard error. `init` warm-starts from an earlier fit
    (re-weighting rounds move strengths little, so Newton then needs a step or two).
    """
    s, n, _ = wins.shape
    counts = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    theta = np.zeros((s, n)) if init is None else init.copy()
    eye = np.eye(n)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))  # p[s,i,j] = P(i beats j)
        grad = won - (counts * p).sum(axis=2) - prior * theta
        info = counts * p * (1.0 - p)  # Fisher information of each pair
        hess = info - eye * (info.sum(axis=2) + prior)[:, :, None]  # negative definite
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        theta = theta - step
        if np.abs(step).max(initial=0.0) < tol:
            break
    p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))
    info = counts * p * (1.0 - p)
    precision = eye * (info.sum(axis=2) + prior)[:, :, None] - info
    cov = np.linalg.inv(precision)
    # Strengths are only defined up to a common shift, which only the weak prior pins down: report the error
    # of the centred θ (C·cov·C, C = I - 11ᵀ/n), or every candidate would carry the prior's large variance.
    centre = eye - 1.0 / n
    cov = centre @ cov @ centre
    se = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    return Fit(theta - theta.mean(axis=1, keepdims=True), se)


def borda(rankings: np.ndarray, set_idx: np.ndarray, weights: np.ndarray, num_sets: int, n: int) -> np.ndarray:
    """Weighted Borda per set, (sets, n): a candidate gets (k-1-position) points per ranking of k items."""
    j_count, width = rankings.shape
    k = (rankings >= 0).sum(axis=1, keepdims=True)
    points = (k - 1 - np.arange(width)[None, :]) * weights[:, None]
    ok = rankings >= 0
    flat = (set_idx[:, None] * n + np.where(ok, rankings, 0))[ok]
    return np.bincount(flat, weights=points[ok], minlength=num_sets * n).reshape(num_sets, n)


def kendall_tau_vs(rankings: np.ndarray, set_idx: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Kendall tau of each ranking against reference scores of its set, over the pairs the ranking orders
    and the reference separates (ties in the reference are skipped); NaN where no pair qualifies."""
    num_sets, n = reference.shape
    return Comparisons.from_rankings(rankings, set_idx, num_sets, n).tau(reference)
