"""Judge trust: a weight per judge call from the evidence about it.

Three kinds of evidence, each a factor; a call's weight is their product, renormalised to mean 1 over the
valid calls of its set (so the total evidence, and with it the Bradley–Terry uncertainty, stays honest):

- meta: how the judges one level up ranked this call (its Bradley–Terry strength θ among its set's calls,
  mapped to 2·σ(θ): 1 for an average call, towards 0 for one every meta-judge puts last);
- truth: where execution gives procedural scores, the call's Kendall tau against them (a judge no better
  than chance against execution gets the floor);
- consensus: the call's Kendall tau against the weighted aggregate of its set, iterated a few rounds.
  Calibration without outside truth: a judge that contradicts the trusted majority loses its say.

An invalid answer weighs 0 whatever the evidence.
"""

from __future__ import annotations

import numpy as np

from rsi.judging.aggregate import Comparisons, Fit, bradley_terry, kendall_tau_vs

FLOOR = 0.02  # smallest factor: a distrusted call still counts a little, so no set is left with no weight
# Agreement at or above this tau counts fully. Trust is a detector, not a grade: weighting honest-but-noisy
# calls in proportion to their tau adds variance (in simulation it lost more accuracy than the bad judge
# cost), while saturating keeps every competent call at full weight and drives the bad ones to the floor.
SATURATION = 0.5


def normalise(weights: np.ndarray, set_idx: np.ndarray, num_sets: int) -> np.ndarray:
    """Scale weights so that each set's positive weights average 1."""
    total = np.bincount(set_idx, weights=weights, minlength=num_sets)
    count = np.bincount(set_idx, weights=(weights > 0).astype(np.float64), minlength=num_sets)
    scale = np.divide(count, total, out=np.zeros(num_sets), where=total > 0)
    return weights * scale[set_idx]


def tau_factor(tau: np.ndarray, floor: float = FLOOR, saturation: float = SATURATION) -> np.ndarray:
    """Agreement tau in [-1, 1] → factor in [floor, 1] (tau/saturation, clipped); no evidence (NaN) → 1."""
    return np.where(np.isnan(tau), 1.0, np.clip(np.nan_to_num(tau) / saturation, floor, 1.0))


def meta_factor(theta: np.ndarray) -> np.ndarray:
    """Bradley–Terry strength of a call among its set's calls (centred) → 2·σ(θ) in (0, 2)."""
    return 2.0 / (1.0 + np.exp(-theta))


def truth_tau(rankings: np.ndarray, set_idx: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Kendall tau of each call against procedural scores (truth: (sets, n), NaN where unknown)."""
    known = ~np.isnan(truth)
    ref = np.where(known, truth, 0.0)
    tau = kendall_tau_vs(rankings, set_idx, ref)
    # a set with any unknown candidate has no full truth: no evidence rather than a wrong one
    return np.where(known.all(axis=1)[set_idx], tau, np.nan)


def consensus_weights(rankings: np.ndarray, set_idx: np.ndarray, base: np.ndarray, num_sets: int, n: int, *,
                      rounds: int = 2, prior: float = 0.1, iterations: int = 25,
                      floor: float = FLOOR) -> tuple[np.ndarray, Fit, np.ndarray]:
    """Iterate: fit with the current weights, re-weight each call by its tau against that fit.

    Returns the final weights (normalised per set), the fit made with them and each call's consensus tau.
    `rounds=0` skips consensus: weights are `base` normalised.
    """
    comps = Comparisons.from_rankings(rankings, set_idx, num_sets, n)
    weights = normalise(base, set_idx, num_sets)
    tau = np.full(len(base), np.nan)
    fit = bradley_terry(comps.wins(weights), prior, iterations)
    for _ in range(rounds):
        tau = comps.tau(fit.theta)
        weights = normalise(base * tau_factor(tau, floor), set_idx, num_sets)
        fit = bradley_terry(comps.wins(weights), prior, iterations, init=fit.theta)
    return weights, fit, tau
