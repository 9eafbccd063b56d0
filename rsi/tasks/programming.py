"""The programming family, the seed's chain: create a task → write evaluation code → solve it, every output
ranked by judges and every ranking ranked again; execution (solutions × evaluation suites in the sandbox) is
the procedural judge and the ground truth for measuring the judges."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsi.tasks.family import Chain, Check, Family, FamilyConfig, Generate, Item, MetaRank, Rank, Select
from rsi.tasks.mutants import make_mutants
from rsi.tasks.parsing import UNPARSEABLE, Parsed, parse_json_object, parse_python

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "description": {"type": "string", "maxLength": 600},
        "entry_point": {"type": "string", "pattern": "^[a-z_][a-z0-9_]{0,39}$"},
        "signature": {"type": "string", "maxLength": 160},
        "examples": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 160}},
    },
    "required": ["title", "description", "entry_point", "signature", "examples"],
    "additionalProperties": False,
}
_JSON_VALUE: dict[str, Any] = {"anyOf": [
    {"type": "integer"}, {"type": "number"}, {"type": "string", "maxLength": 80}, {"type": "boolean"},
    {"type": "null"}, {"type": "array", "maxItems": 8, "items": {"type": ["integer", "number", "string", "boolean"]}},
]}
EVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"cases": {"type": "array", "minItems": 1, "maxItems": 8, "items": {
        "type": "object",
        "properties": {"args": {"type": "array", "maxItems": 4, "items": _JSON_VALUE}, "expected": _JSON_VALUE},
        "required": ["args", "expected"], "additionalProperties": False,
    }},
        # Optional property checks: Python expressions over `args` and `result` that must hold for every case.
        "properties": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 120}}},
    "required": ["cases"],
    "additionalProperties": False,
}


def parse_task(text: str, parent: Item | None = None) -> Parsed:
    parsed = parse_json_object(text, TASK_SCHEMA["required"])
    if not parsed.ok:
        return parsed
    task = parsed.value
    if not isinstance(task["entry_point"], str) or not task["entry_point"].isidentifier():
        return Parsed("missing_fields", task, f"entry_point {str(task['entry_point'])[:80]!r} is not a name")
    wrong = [k for k in ("title", "description", "signature") if not isinstance(task[k], str)]
    if wrong or not isinstance(task["examples"], list):
        return Parsed("missing_fields", task, f"not text: {wrong or ['examples (a list)']}")
    return parsed


def render_task(item: Item) -> str:
    """What a judge and the later steps see of a task; an unparseable one is shown raw, to be judged on merit."""
    t = item["parsed"]
    if item["parse_status"] != "ok" or not isinstance(t, dict):
        return item["completion"]
    examples = "\n".join(f"  {e}" for e in t.get("examples", []))
    return f"Title: {t['title']}\n{t['description']}\nSignature: {t['signature']}\nExamples:\n{examples}"


def parse_eval(text: str, parent: Item | None = None) -> Parsed:
    parsed = parse_json_object(text, ["cases"])
    if not parsed.ok:
        return parsed
    cases = parsed.value["cases"]
    good = [c for c in cases if isinstance(c, dict) and isinstance(c.get("args"), list) and "expected" in c] \
        if isinstance(cases, list) else []
    if not good:
        return Parsed("no_valid_cases", parsed.value, "no case with an 'args' list and an 'expected' value")
    props = parsed.value.get("properties") or []
    props = [p for p in props if isinstance(p, str) and _is_expression(p)] if isinstance(props, list) else []
    return Parsed("ok", {"cases": [{"args": c["args"], "expected": c["expected"]} for c in good],
                         "properties": props})


def _is_expression(text: str) -> bool:
    try:
        compile(text, "<property>", "eval")
    except (SyntaxError, *UNPARSEABLE):
        return False
    return True


def suite_job(solution: str, suite: dict[str, Any], entry: str) -> dict:
    """One sandbox job: the suite's cases, plus each property checked on every case's arguments through a
    wrapper that calls the solution (the comparison with `True` happens on the host, as for any case)."""
    from rsi.sandbox.executor import json_job

    props = suite.get("properties") or []
    wrappers = "".join(
        f"\n\ndef _rsi_property_{k}(*args):\n    result = {entry}(*args)\n    return bool({expr})\n"
        for k, expr in enumerate(props))
    cases = list(suite["cases"]) + [{"function": f"_rsi_property_{k}", "args": c["args"], "expected": True}
                                    for k in range(len(props)) for c in suite["cases"]]
    return json_job(solution + wrappers, cases, entry)


def suite_size(suite: dict[str, Any]) -> int:
    return len(suite["cases"]) * (1 + len(suite.get("properties") or []))


def render_eval(item: Item) -> str:
    if item["parse_status"] != "ok":
        return item["completion"]
    lines = [f"{json.dumps(c['args'])} -> {json.dumps(c['expected'])}" for c in item["parsed"]["cases"]]
    lines += [f"property: {p}" for p in item["parsed"].get("properties") or []]
    return "\n".join(lines)


def parse_solution(text: str, parent: Item | None) -> Parsed:
    entry = parent["parsed"]["entry_point"] if parent and isinstance(parent.get("parsed"), dict) else None
    return parse_python(text, entry)


def render_code(item: Item) -> str:
    return item["parsed"] if item["parse_status"] == "ok" else item["completion"]


def _task_variables(seed: str, parent: Item | None) -> dict[str, str]:
    return {"domain": seed}


def _child_variables(seed: str, parent: Item | None) -> dict[str, str]:
    assert parent is not None
    t = parent["parsed"]
    return {"task": render_task(parent), "entry_point": t["entry_point"], "signature": t["signature"]}


def _pass_fraction(verdict: dict, n_cases: int) -> float:
    passed = sum(t["status"] == "pass" for t in verdict.get("tests", []))
    return passed / n_cases if n_cases else 0.0


def execute(chain: Chain, run_jobs: Callable[[list[dict]], list[dict]]) -> None:
    """Solutions × evaluation suites for every kept task, plus mutants of the best-supported solution.

    Suite score: 0 when it rejects the best-supported solution (wrong, or nothing passes it), else
    0.5 + 0.5 × the share of mutants it kills (weak suites let mutants through). Solution score: its pass rate
    over the suites that scored above 0 (all suites when none did). Both keep their matrix rows as detail.
    """
    items = chain["items"]
    for task in (i for i in items if i["step"] == "create_task" and i["kept"]):
        evals = [i for i in items if i["step"] == "create_eval" and i["parent_id"] == task["id"]]
        sols = [i for i in items if i["step"] == "solve" and i["parent_id"] == task["id"]]
        for i in evals + sols:
            i["procedural_score"] = 0.0
        good_evals = [e for e in evals if e["parse_status"] == "ok"]
        good_sols = [s for s in sols if s["parse_status"] == "ok"]
        if not good_evals or not good_sols:
            continue
        entry = task["parsed"]["entry_point"]
        jobs = [suite_job(s["parsed"], e["parsed"], entry) for s in good_sols for e in good_evals]
        verdicts = run_jobs(jobs)
        matrix = [[_pass_fraction(verdicts[si * len(good_evals) + ei], suite_size(e["parsed"]))
                   for ei, e in enumerate(good_evals)] for si in range(len(good_sols))]
        best = max(range(len(good_sols)), key=lambda si: (sum(matrix[si]), -si))
        mutants = make_mutants(good_sols[best]["parsed"])
        killed = [0] * len(good_evals)
        if mutants:
            mjobs = [suite_job(code, e["parsed"], entry) for _, code in mutants for e in good_evals]
            mverdicts = run_jobs(mjobs)
            for mi in range(len(mutants)):
                for ei, e in enumerate(good_evals):
                    killed[ei] += _pass_fraction(mverdicts[mi * len(good_evals) + ei], suite_size(e["parsed"])) < 1
        for ei, e in enumerate(good_evals):
            accepts_best = matrix[best][ei] == 1.0
            kill_rate = killed[ei] / len(mutants) if mutants else 0.0
            e["procedural_score"] = (0.5 + 0.5 * kill_rate) if accepts_best else 0.0
            e["procedural_detail"] = {"accepts_best": accepts_best, "mutants": len(mutants),
                                      "killed": killed[ei], "column": [row[ei] for row in matrix]}
        trusted = [ei for ei, e in enumerate(good_evals) if e["procedural_score"] > 0] or list(range(len(good_evals)))
        for si, s in enumerate(good_sols):
            s["procedural_score"] = sum(matrix[si][ei] for ei in trusted) / len(trusted)
            s["procedural_detail"] = {"row": matrix[si], "suites": [good_evals[ei]["id"] for ei in trusted]}
        task["procedural_detail"] = {"pass_matrix": matrix, "solutions": [s["id"] for s in good_sols],
                                     "suites": [e["id"] for e in good_evals], "best_solution": good_sols[best]["id"]}


@dataclass
class ProgrammingConfig(FamilyConfig):
    """`tasks.programming`: the base sizes, plus how many tasks go on and what each kept task gets."""

    keep: int = 1  # tasks of a set that go on to evaluation code and solving
    evals: int = 2  # evaluation suites per kept task
    solutions: int = 3  # solutions per kept task


FAMILY = Family(
    name="programming",
    prompt_dir="programming",
    config=ProgrammingConfig,
    ops=(
        Generate("create_task", "create_task.txt", "candidates", parse_task, render_task, _task_variables,
                 schema=TASK_SCHEMA),
        Rank("rank_tasks", of="create_task", template="rank_tasks.txt"),
        MetaRank("rank_task_rankings", of="rank_tasks", template="rank_task_rankings.txt"),
        Select(of="create_task", keep="keep"),
        Generate("create_eval", "create_eval.txt", "evals", parse_eval, render_eval, _child_variables,
                 parent="create_task", schema=EVAL_SCHEMA),
        Generate("solve", "solve.txt", "solutions", parse_solution, render_code, _child_variables,
                 parent="create_task"),
        Check("execute", execute),
        Rank("rank_evals", of="create_eval", template="rank_evals.txt"),
        MetaRank("rank_eval_rankings", of="rank_evals", template="rank_eval_rankings.txt"),
        Rank("rank_solutions", of="solve", template="rank_solutions.txt"),
        MetaRank("rank_solution_rankings", of="rank_solutions", template="rank_solution_rankings.txt"),
    ),
)
