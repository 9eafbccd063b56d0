"""Pairwise mode: the judge compares two candidates at a time instead of ranking the whole set.

Each unordered pair is shown in both orders (so position bias cancels and can be measured), `rounds` times.
A pairwise answer is a ranking of two labels; candidates keep the labels they have listwise (A…), so the
answer maps straight to candidate indices and aggregates with the listwise ones (`decide_pairs` takes
rankings of any length: a pairwise judgment is a ranking [winner, loser] over candidate indices).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

from rsi.judging.ranking import ParsedRanking, labels_for, parse_ranking, ranking_messages, ranking_schema


@dataclass
class PairRequest:
    items: tuple[int, int]  # candidate indices, canonical order
    shown: tuple[int, int]  # the order the judge sees them in
    messages: list[dict[str, str]]
    json_schema: dict[str, Any]


def pairwise_schedule(n: int, rounds: int = 1, seed: int = 0) -> list[tuple[int, int]]:
    """Shown orders: every pair of n candidates both ways, `rounds` times, shuffled by `seed`."""
    pairs = list(itertools.combinations(range(n), 2))
    rng = random.Random(seed)
    shown = [(a, b) for a, b in pairs for _ in range(rounds)] + [(b, a) for a, b in pairs for _ in range(rounds)]
    rng.shuffle(shown)
    return shown


def pairwise_requests(instruction: str, rubric: str, candidates: list[str], shown: list[tuple[int, int]],
                      rationale_chars: int) -> list[PairRequest]:
    labels = labels_for(len(candidates))
    out = []
    for first, second in shown:
        items = (min(first, second), max(first, second))
        pair_labels = [labels[items[0]], labels[items[1]]]
        order = [0, 1] if first == items[0] else [1, 0]
        out.append(PairRequest(items, (first, second),
                               ranking_messages(instruction, rubric, [candidates[i] for i in items], pair_labels,
                                                order, rationale_chars),
                               ranking_schema(pair_labels, rationale_chars)))
    return out


def parse_pairwise(text: str, items: tuple[int, int] | list[int], n: int) -> ParsedRanking:
    """A pairwise answer of a set of n candidates, its ranking as candidate indices [winner, loser]."""
    labels = labels_for(n)
    parsed = parse_ranking(text, [labels[i] for i in items])
    if parsed.ranking is not None:
        parsed.ranking = [items[k] for k in parsed.ranking]
    return parsed
