"""The judging knobs of a run (the `judging` section of the config): how many judge calls, how deep the meta-judging
goes, and how `rsi.judging.decide` turns judgments into scores and pairs."""

from __future__ import annotations

from dataclasses import dataclass

from rsi.choice import Choice


class JudgingMode(Choice):
    listwise = "listwise"  # one call ranks the whole set
    pairwise = "pairwise"  # every pair of a set, both orders


class Aggregator(Choice):
    bt = "bt"  # weighted Bradley–Terry, with a standard error per candidate
    borda = "borda"  # the cheap baseline


@dataclass
class JudgingConfig:
    rankings_per_set: int = 2  # judge calls per candidate set, each on a different permutation
    meta_rankings_per_set: int = 1  # meta-judge calls ranking those rankings
    max_tokens: int = 160
    temperature: float = 0.7
    rationale_chars: int = 200  # bound on the rationale in the JSON schema: keeps small models parseable
    mode: JudgingMode = JudgingMode.listwise
    meta_depth: int = 2  # judging levels: 1 ranks performances, 2 ranks those rankings, …
    aggregator: Aggregator = Aggregator.bt
    bt_prior: float = 0.1  # Gaussian prior precision on strengths: finite scores for undefeated candidates
    bt_iterations: int = 25
    consensus_rounds: int = 2  # re-weighting rounds by agreement with the weighted aggregate (0: off)
    min_margin: float = 0.1  # no pair below this BT advantage 2σ(Δθ)-1 (or normalised procedural gap)
    length_control: bool = True  # among candidates within the top's uncertainty, choose the shortest
    length_tolerance: float = 1.0  # "within the uncertainty": Δθ ≤ tolerance × combined standard error
    # judgement pairs are left out while their chosen rankings' first pick sits at one shown position more than
    # this much above its fair share 1/k (DPO must not learn position bias); negative: off
    position_balance: float = 0.15
    balance_warmup: int = 20  # pairs admitted per step before the balance starts refusing
    # a judgement pair that execution decides is trained on the prompts of both judgments (both shown orders),
    # not only on the worse one's: its chosen answer then picks each shown position equally often
    truth_both_orders: bool = True
    # such a pair contrasts the ranking alone: its rejected answer is the chosen one's text with the worse
    # judgment's ranking, so DPO moves the verdict rather than the wording of two unrelated rationales
    truth_same_rationale: bool = True
