"""Evaluation and gate settings of a run (`evals:` and `gate:` in the config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rsi.evals.suite import DEFAULT_TASKS


@dataclass
class EvalsConfig:
    enabled: bool = True
    # held-out tasks scored on v0 and on every candidate (rsi.evals.suite.TASKS); default: all but negotiation
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    # items per task (a deterministic subset, rsi.evals.task.subset); null: every item (+preset=gpu). 20 keeps
    # the candidate's evaluation under a third of a SmolLM2 iteration on 2 cores (docs/evaluation.md)
    limit: int | None = 20
    # task -> its own item count, replacing `limit` for that task (e.g. more judge pairs for a paired test's power
    # where the other tasks sit at the model's floor)
    limits: dict[str, int] = field(default_factory=dict)
    every: int = 1  # evaluate (and gate) every this many iterations; candidates in between are kept ungated
    data: dict[str, str] = field(default_factory=dict)  # task -> file replacing its built-in items
    # families whose generation prompts format_following asks; empty: the run's own (`tasks`). Naming families the
    # run does not train on shows whether training on some formats breaks the others.
    families: list[str] = field(default_factory=list)
    # corpus rows sharing a run of this many code tokens with an evaluation item are left out of the
    # preferences (counted in the manifest), so held-out items never become training data; 0: off
    overlap_ngram: int = 10


@dataclass
class GateConfig:
    enabled: bool = True  # off: every candidate is kept, the metrics are still reported
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))  # gated tasks; default: evals.tasks
    tolerance: float = 0.0  # largest acceptable drop, in points of the metric (0.05 = 5 points)
    # the mean of the gated metrics' point-estimate deltas must reach this (0: no worse on average)
    min_gain: float = 0.0
