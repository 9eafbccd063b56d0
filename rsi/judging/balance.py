"""Label balance of judgement pairs: DPO must not learn "the first-shown candidate wins".

A judgement pair's chosen ranking puts some candidate first; where that candidate sat in the order shown is
the pair's *position key*. If chosen rankings favour one position, training on them teaches position bias.
`PositionBalance` admits a pair unless its position already holds more than its fair share (1/k) plus a
tolerance of the pairs admitted so far; it is streaming (counters only) and deterministic in arrival order.
"""

from __future__ import annotations

from collections import Counter


def position_key(ranking: list[int], presented: list[int]) -> int:
    """Shown position (0 = first) of the item a ranking puts first."""
    return presented.index(ranking[0])


class PositionBalance:
    def __init__(self, tolerance: float = 0.15, warmup: int = 20) -> None:
        self.tolerance, self.warmup = tolerance, warmup
        self.counts: Counter = Counter()
        self.total = 0
        self.dropped = 0

    def admit(self, position: int, k: int) -> bool:
        """Whether a pair whose chosen ranking put shown position `position` of k first may be written."""
        if self.total >= self.warmup and (self.counts[position] + 1) / (self.total + 1) > 1.0 / k + self.tolerance:
            self.dropped += 1
            return False
        self.counts[position] += 1
        self.total += 1
        return True
