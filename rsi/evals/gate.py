"""The gate: keep a candidate version only if it did not get worse than the version it came from.

Both versions are scored item by item on the same held-out items. The gate looks only at the items of the
"gate" half of each set (`rsi.evals.task.half_of`); whether the loop improved is claimed on the other half, so
deciding every iteration on the same items cannot pass for improvement.

A candidate is rejected when a gated metric's paired 95% CI lies wholly below `-tolerance` (a significant drop
beyond what is acceptable), or when the mean of the gated metrics' point-estimate deltas is below `min_gain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rsi.evals.config import GateConfig
from rsi.evals.stats import compare_items
from rsi.evals.task import half_of

Items = dict[str, list[dict[str, Any]]]  # task -> item-level results


@dataclass
class GateDecision:
    keep: bool
    reasons: list[str] = field(default_factory=list)  # why it was rejected (empty when kept)
    gate: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> paired comparison on the gate half
    claim: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> the same on the claim half


def ids_of_half(items: list[dict[str, Any]], half: str) -> set[str]:
    return {str(it["id"]) for it in items if half_of(str(it["id"])) == half}


def paired(kept: Items, candidate: Items, half: str | None = None) -> dict[str, dict[str, Any]]:
    """Per task both hold: delta (candidate − kept), its paired 95% CI, exact McNemar p and n, on one half or
    on every item (half None)."""
    out = {}
    for task in sorted(kept.keys() & candidate.keys()):
        only = ids_of_half(kept[task], half) if half else None
        out[task] = compare_items(kept[task], candidate[task], only=only)
    return out


def decide(kept: Items, candidate: Items, cfg: GateConfig) -> GateDecision:
    gate, claim = paired(kept, candidate, "gate"), paired(kept, candidate, "claim")
    if not cfg.enabled:
        return GateDecision(True, [], gate, claim)
    missing = [t for t in cfg.metrics if t not in gate]
    if missing:
        raise ValueError(f"gate.metrics: {missing} were not evaluated on both versions (evals.tasks)")
    reasons = [f"{t}: paired 95% CI {gate[t]['ci95'][1]:+.3f} lies below -{cfg.tolerance:g}"
               for t in cfg.metrics if gate[t]["n"] and gate[t]["ci95"][1] < -cfg.tolerance]
    mean_gain = sum(gate[t]["delta"] for t in cfg.metrics) / len(cfg.metrics) if cfg.metrics else 0.0
    if mean_gain < cfg.min_gain:
        reasons.append(f"mean gain {mean_gain:+.3f} of {', '.join(cfg.metrics)} is below gate.min_gain "
                       f"{cfg.min_gain:g}")
    return GateDecision(not reasons, reasons, gate, claim)
