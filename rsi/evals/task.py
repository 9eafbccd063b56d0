"""What every held-out evaluation task is: items scored one by one against a served model, and a metric with a
95% confidence interval, so two versions can be compared on the same items.

A task is a function `(EvalContext) -> TaskResult`, registered in `rsi.evals.suite.TASKS`. It reaches the model
only through `ctx.generate` / `ctx.judge` (the running pools in the loop, an engine of its own under
`rsi eval run`) and code only through `ctx.run_jobs` (the sandbox), so it starts no engine of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsi.input_files import check_fields, read_json_lines
from rsi.judging.config import JudgingConfig

# Requests in the pools' wire format ({"messages", "max_tokens", "temperature", "seed", "json_schema"}) to
# completions ({"text", "num_tokens", "finish_reason", "model_version", …}), in order.
Generate = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
# Sandbox jobs (rsi.sandbox.executor's humaneval_job / json_job) to verdict dicts (Verdict.to_dict), in order.
RunJobs = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class EvalContext:
    generate: Generate  # the policy
    judge: Generate  # the judge (the policy itself when it judges itself)
    run_jobs: RunJobs | None = None  # None: tasks that execute code refuse to run, naming the task
    limit: int | None = None  # score a deterministic subset of this many items (`subset`)
    limits: dict[str, int] = field(default_factory=dict)  # task -> its own `limit`
    data: dict[str, str] = field(default_factory=dict)  # task -> file replacing its built-in items
    families: list[str] = field(default_factory=lambda: ["programming"])  # enabled task families
    judging: JudgingConfig = field(default_factory=JudgingConfig)  # the judge prompt's settings, as in the pipeline
    # The other side of two-agent tasks (negotiation): v0's weights, never swapped, so every version meets the same
    # opponent. None: such a task refuses to run, naming itself.
    partner: Generate | None = None


@dataclass
class TaskResult:
    task: str
    metric: str  # e.g. "pass@1", "accuracy", "parse_rate"
    value: float  # the metric over all items, in [0, 1]
    ci95: tuple[float, float]
    n: int  # items scored
    items: list[dict[str, Any]]  # one per item: at least "id" and "correct" (0 or 1), and what was scored
    extra: dict[str, Any] = field(default_factory=dict)  # secondary metrics, each {"value", "ci95", "n"}


def item_hash(item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")


def subset(items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` items in the order of their ids' hashes: deterministic, spread over the whole set, and
    a larger limit keeps every item of a smaller one."""
    ordered = sorted(items, key=lambda it: item_hash(str(it["id"])))
    return ordered if limit is None else ordered[:limit]


def half_of(item_id: str) -> str:
    """Which half of a held-out set an item is in: the gate decides on "gate", improvement is claimed on
    "claim", so deciding every iteration on the same items cannot be mistaken for getting better."""
    return "gate" if item_hash("half:" + item_id) % 2 == 0 else "claim"


def read_jsonl(path: str | Path, required: tuple[str, ...], what: str = "an item",
               kind: type | tuple[type, ...] = object, error: type[ValueError] = ValueError) -> list[dict[str, Any]]:
    """One JSON object per line, each holding the `required` fields (of type `kind`); a bad file or line raises
    `error` naming the file and the line, so a malformed data file fails before any model starts."""
    out = []
    for lineno, obj in read_json_lines(path, error):
        check_fields(obj, dict.fromkeys(required, kind), f"{path}:{lineno}", error, what)
        out.append(obj)
    return out
