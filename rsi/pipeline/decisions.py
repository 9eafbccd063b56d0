"""A chain's candidate sets and the one decision made for each.

A *set* is the candidates of one generated step that share a parent; the judges rank it at level 1, and the
rankings of a set are ranked again one level up (meta-judging), as far as `judging.meta_depth` goes. The
decision of a set (trust weights, Bradley–Terry scores, pairs: `rsi.judging.decide`) is computed once, when
something first needs it (`Select` keeping the best, or the assembly of the chain's rows), and stored in the
chain's state, so both read the same verdict. A `Check` changes procedural scores, which the decision reads,
so it clears the stored decisions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from rsi.corpus.ids import content_id
from rsi.judging.config import JudgingConfig
from rsi.judging.decide import Decision, Pair, decide_rows
from rsi.tasks.family import Chain, Item

Row = dict[str, Any]


def items_by_set(items: list[Item], step: str | None = None) -> dict[str, list[Item]]:
    """Candidate sets (of one step, or of all), each in generation order: the order judges' indices refer to."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for i in items:
        if step is None or i["step"] == step:
            groups[i["set_id"]].append(i)
    return groups


def judgments_by_set(judgments: list[Row]) -> dict[str, list[Row]]:
    """Judgments grouped by the set they rank (a candidate set at level 1, a set of judgments above)."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for j in judgments:
        groups[j["set_id"]].append(j)
    return groups


def meta_set_id(judgments: list[Row]) -> str:
    """The set that ranks these judgments (all of one set and level) one level up."""
    return content_id("rankings", set_id=judgments[0]["set_id"], step=judgments[0]["step"])


def judgment_levels(judgments: list[Row], level1: list[Row]) -> list[list[Row]]:
    """level1, the judgments ranking level1, those ranking them, … as far as the chain's judgments go."""
    by_set = judgments_by_set(judgments)
    levels = [level1]
    while True:
        ids = [j["id"] for j in levels[-1]]
        above = [j for j in by_set.get(meta_set_id(levels[-1]), []) if j["candidate_ids"] == ids]
        if not above:
            return levels
        levels.append(above)


def decide_set(chain: Chain, set_id: str, judging: JudgingConfig) -> tuple[list[Item], list[list[Row]], Decision]:
    """The set's candidates, its judgment levels (none when nobody judged it) and its decision, computed on first
    use and stored in the chain."""
    candidates = items_by_set(chain["items"])[set_id]
    level1 = [j for j in chain["judgments"] if j["set_id"] == set_id]
    levels = judgment_levels(chain["judgments"], level1) if level1 else []
    stored = chain.setdefault("decisions", {})
    if set_id not in stored:
        stored[set_id] = asdict(decide_rows(candidates, levels, judging))
    d = stored[set_id]
    return candidates, levels, Decision(d["weights"], d["scores"], [Pair(**p) for p in d["pairs"]])


def forget_decisions(chain: Chain) -> None:
    """After a Check: procedural scores may have changed, so every set is decided again when next needed."""
    chain.pop("decisions", None)
