"""Output prediction: the model writes a short deterministic program, other samples predict what it returns,
and the sandbox settles both. The writer is rewarded for learnable programs: 1 − solve rate, and 0 when
nobody solves it or it does not return the same value on two runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsi.tasks.family import Chain, Check, Family, FamilyConfig, Generate, Item, MetaRank, Rank
from rsi.tasks.parsing import Parsed, parse_json_object, parse_python

PREDICTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reasoning": {"type": "string", "maxLength": 300}, "prediction": {}},
    "required": ["reasoning", "prediction"],
    "additionalProperties": False,
}


def parse_program(text: str, parent: Item | None = None) -> Parsed:
    return parse_python(text, "solution")


def render_program(item: Item) -> str:
    return item["parsed"] if item["parse_status"] == "ok" else item["completion"]


def parse_prediction(text: str, parent: Item | None = None) -> Parsed:
    return parse_json_object(text, ["prediction"])


def render_prediction(item: Item) -> str:
    return json.dumps(item["parsed"]["prediction"]) if item["parse_status"] == "ok" else item["completion"]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _returned(verdict: dict) -> tuple[bool, Any]:
    """(did `solution()` return, its value). A wrong 'expected' marks the case failed, not the run."""
    tests = verdict.get("tests", [])
    if len(tests) != 1 or tests[0]["status"] not in ("pass", "fail"):
        return False, None
    return True, tests[0].get("output")


def run_programs(chain: Chain, run_jobs: Callable[[list[dict]], list[dict]]) -> None:
    """Run every parsed program twice; only programs that return the same value both times go on."""
    from rsi.sandbox.executor import json_job

    programs = [i for i in chain["items"] if i["step"] == "write_program"]
    runnable = [p for p in programs if p["parse_status"] == "ok"]
    # `expected` is a placeholder: the value is read from the case's recorded output, compared on the host.
    jobs = [json_job(p["parsed"], [{"function": "solution", "args": [], "expected": None}])
            for p in runnable for _ in range(2)]
    verdicts = run_jobs(jobs) if jobs else []
    for p in programs:
        p["kept"], p["procedural_score"] = False, 0.0
    for k, p in enumerate(runnable):
        (ok1, v1), (ok2, v2) = _returned(verdicts[2 * k]), _returned(verdicts[2 * k + 1])
        deterministic = ok1 and ok2 and canonical(v1) == canonical(v2)
        p["kept"] = deterministic
        p["procedural_detail"] = {"output": v1 if deterministic else None, "deterministic": deterministic,
                                  "status": verdicts[2 * k]["status"]}


def score_predictions(chain: Chain, run_jobs: Callable[[list[dict]], list[dict]]) -> None:
    """Exact match of each prediction with the program's output, then the writer's learnability."""
    items = chain["items"]
    for program in (i for i in items if i["step"] == "write_program" and i["kept"]):
        truth = canonical(program["procedural_detail"]["output"])
        preds = [i for i in items if i["step"] == "predict_output" and i["parent_id"] == program["id"]]
        for p in preds:
            right = p["parse_status"] == "ok" and canonical(p["parsed"]["prediction"]) == truth
            p["procedural_score"] = 1.0 if right else 0.0
        solve_rate = sum(p["procedural_score"] for p in preds) / len(preds) if preds else 0.0
        program["procedural_score"] = 0.0 if solve_rate == 0 else 1.0 - solve_rate
        program["procedural_detail"]["solve_rate"] = solve_rate


def _program_variables(seed: str, parent: Item | None) -> dict[str, str]:
    return {"topic": seed}


def _prediction_variables(seed: str, parent: Item | None) -> dict[str, str]:
    assert parent is not None
    return {"program": parent["parsed"]}


@dataclass
class PythonOutputConfig(FamilyConfig):
    """`tasks.python_output`: the base sizes, plus predictions. No `keep`: every deterministic program is
    predicted."""

    predictions: int = 3  # predictions per program


FAMILY = Family(
    name="python_output",
    prompt_dir="python_output",
    config=PythonOutputConfig,
    ops=(
        Generate("write_program", "write_program.txt", "candidates", parse_program, render_program,
                 _program_variables),
        Check("run_programs", run_programs),
        Rank("rank_programs", of="write_program", template="rank_programs.txt"),
        MetaRank("rank_program_rankings", of="rank_programs", template="rank_program_rankings.txt"),
        Generate("predict_output", "predict_output.txt", "predictions", parse_prediction, render_prediction,
                 _prediction_variables, parent="write_program", schema=PREDICTION_SCHEMA),
        Check("score_predictions", score_predictions, needs_sandbox=False),
    ),
)
