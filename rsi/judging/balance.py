"""Label balance of judgement pairs: DPO must not learn "the first-shown candidate wins".

A judgement pair's chosen ranking puts some candidate first; where that candidate sat in the order shown is
the pair's position (`chosen_first_shown`). If chosen rankings favour one position, training on them teaches
position bias.
`PositionBalance` admits a pair unless its position already holds more than its fair share (1/k) plus a
tolerance of the pairs admitted so far; it is streaming (counters only) and deterministic in arrival order.

The corpus pass keeps one balance per judging step and restores it from the committed parts' counters after a
crash, so a resumed pass balances as if it had never stopped. Which judgement pairs are left out depends on the
order chains finish in (performances and judgments do not); `judging.position_balance < 0` turns it off where
the pair set must not depend on scheduling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class PositionBalance:
    def __init__(self, tolerance: float = 0.15, warmup: int = 20) -> None:
        self.tolerance, self.warmup = tolerance, warmup
        self.counts: Counter = Counter()
        self.total = 0
        self.dropped = 0

    def restore(self, counts: dict[int, int], dropped: int = 0) -> None:
        """Continue from the admitted counts (position → pairs) of an earlier, interrupted pass."""
        self.counts.update(counts)
        self.total += sum(counts.values())
        self.dropped += dropped

    def admit(self, position: int, k: int) -> bool:
        """Whether a pair whose chosen ranking put shown position `position` of k first may be written."""
        if self.total >= self.warmup and (self.counts[position] + 1) / (self.total + 1) > 1.0 / k + self.tolerance:
            self.dropped += 1
            return False
        self.counts[position] += 1
        self.total += 1
        return True


def balance_pairs(rows: list[dict], balances: dict[str, PositionBalance], make: Callable[[], PositionBalance]
                  ) -> tuple[list[dict], Counter]:
    """Preference rows less the judgement pairs whose position is over its share; performance pairs (no
    position) all pass. Returns the kept rows and the drops per step."""
    kept, dropped = [], Counter()
    for r in rows:
        pos, k = r.get("chosen_first_shown"), r.get("shown_items")
        if pos is None or not k:
            kept.append(r)
            continue
        bal = balances.setdefault(r["step"], make())
        if bal.admit(int(pos), int(k)):
            kept.append(r)
        else:
            dropped[r["step"]] += 1
    return kept, dropped


def restore_balances(admitted: dict[str, dict[int, int]], dropped: dict[str, int],
                     make: Callable[[], PositionBalance]) -> dict[str, PositionBalance]:
    """Balances per step as an interrupted pass left them: pairs admitted per step and shown position, and
    pairs dropped per step (`rsi.corpus.counters.balance_admitted` / `balance_dropped` of its tallies)."""
    out = {}
    for step in set(admitted) | set(dropped):
        out[step] = make()
        out[step].restore(admitted.get(step, {}), dropped.get(step, 0))
    return out
