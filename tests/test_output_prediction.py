"""Output prediction: scoring by Python value (hand-checked cases), answer extraction, the item format, the
built-in set (rebuilt in part through the sandbox and compared with the committed file) and the task."""

from __future__ import annotations

import ast
import json
import os
import shutil

import pytest

from rsi.evals import output_prediction as op
from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, subset

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
)


# ------------------------------------------------------------------------------------------------ scoring
@pytest.mark.unit
@pytest.mark.parametrize(
    "pred,ref,same",
    [
        ("(1, 2)", "[1, 2]", False),  # a tuple is not a list
        ("(1,)", "(1,)", True),
        ("{'b': 2, 'a': 1}", "{'a': 1, 'b': 2}", True),  # dict key order does not matter
        ("1", "1.0", True),  # Python ==: int 1 equals float 1.0 (CRUXEval's `assert f(x) == y` agrees)
        ("True", "1", True),  # ... and True == 1, for the same reason
        ("0.30000000000000004", "0.30000000000000004", True),  # repr of 0.1 + 0.2
        ("0.3", "0.30000000000000004", False),
        ("'a\"b'", '"a\\"b"', True),  # the same string, quoted two ways
        ("'ab'", '"ab"', True),
        ("'1'", "1", False),  # a string is not a number
        ("[[1, (2, 3)], {'k': [None]}]", "[[1, (2, 3)], {'k': [None]}]", True),  # nested containers
        ("[[1, [2, 3]], {'k': [None]}]", "[[1, (2, 3)], {'k': [None]}]", False),
        ("None", "None", True),
        ("None", "False", False),
        ("True", "True", True),
        ("{3, 1, 2}", "{1, 2, 3}", True),  # sets: order does not matter
        ("{1, 2}", "[1, 2]", False),
        ("-5", "-5", True),
        ("- 5", "-5", True),  # the same value, written with a space
        ("-5", "5", False),
        ("  [1,2 ]\n", "[1, 2]", True),  # whitespace
        ("nan", "nan", True),  # not literals: the texts are compared
        ("foo(1)", "foo(1) ", True),
        ("foo(1)", "1", False),
    ],
)
@pytest.mark.unit
def test_same_output(pred: str, ref: str, same: bool) -> None:
    assert op.same_output(pred, ref) is same


@pytest.mark.unit
@pytest.mark.parametrize(
    "text,answer",
    [
        ("[1, 2, 3]", "[1, 2, 3]"),
        ("```python\n[1, 2, 3]\n```\nbecause ...", "[1, 2, 3]"),
        ("```\n{'a': 1,\n 'b': 2}\n```", "{'a': 1,\n 'b': 2}"),
        ("```python\nassert f([1]) == 'x == y'\n```", "'x == y'"),
        ("f(3) == 9", "9"),
        ("assert f('a') == ('a', 1)", "('a', 1)"),
        ("Output: 42", "42"),
        ("The answer is: 'hi'", "'hi'"),
        ("`True`", "True"),
        ("42\nThe function adds one.", "42"),
        ("42.\nThe function adds one.", "42."),  # a float literal, equal to 42 when scored
        ("'abc'.", "'abc'"),
        ("'abc'\n\nExplanation: it returns the string", "'abc'"),
        ("```python\n[1, 2", "[1, 2"),  # cut off by max_tokens: kept, then scored wrong
        ("", ""),
    ],
)
@pytest.mark.unit
def test_extract_answer(text: str, answer: str) -> None:
    assert op.extract_answer(text) == answer


@pytest.mark.unit
def test_messages_show_code_and_call() -> None:
    item = {"id": "x", "code": "def f(a):\n    return a\n", "input": "[1], 2", "output": "[1]"}
    (msg,) = op.messages(item)
    assert msg["role"] == "user" and "def f(a):" in msg["content"] and "`f([1], 2)`" in msg["content"]


# -------------------------------------------------------------------------------------------------- items
@pytest.mark.unit
def test_read_items_names_file_and_line(tmp_path) -> None:  # noqa: ANN001
    good = {"id": "a", "code": "def f():\n    return 1\n", "input": "", "output": "1"}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + "{oops\n")
    with pytest.raises(ValueError, match=r"items.jsonl:3: not JSON"):
        op.read_items(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "output": 1}) + "\n")
    with pytest.raises(ValueError, match=r"items.jsonl:2: an item needs"):
        op.read_items(path)
    path.write_text(json.dumps(good) + "\n")
    assert op.read_items(path) == [good]


@pytest.mark.unit
def test_builtin_set() -> None:
    items = op.builtin_items()
    assert len(items) >= 300 and len({it["id"] for it in items}) == len(items)
    for it in items:
        assert it["id"] == op.item_id(it["code"], it["input"])
        assert len(it["output"]) <= op.MAX_CHARS and op._literal(it["output"])[0]
        tree = ast.parse(it["code"])
        assert any(isinstance(n, ast.FunctionDef) and n.name == "f" for n in tree.body)
        assert ast.get_docstring(next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f")) is None


@pytest.mark.unit
def test_as_f_and_call_inputs() -> None:
    src = 'def helper(x):\n    """doc"""\n    return x\n\ndef g(n):\n    """Doc.\n    >>> g(1)\n    1\n    """\n'
    src += "    return n if n < 2 else g(n - 1) + helper(n)\n"
    code = op.as_f(src, "g")
    assert code is not None and "doc" not in code.lower() and "g(" not in code
    ns: dict = {}
    exec(code, ns)
    assert ns["f"](3) == 6
    assert op.as_f("def g(f):\n    return f\n", "g") is None  # `f` is taken
    test = (
        "def check(candidate):\n    assert candidate([1, 2], k=3) == 1\n    x = 5\n    assert candidate(x) == 2\n"
        "    assert candidate(-1) == candidate(-1)\n    assert abs(candidate(1.5) - 2) < 1e-6\n"
    )
    assert op.call_inputs(test) == ["[1, 2], k=3", "-1", "1.5"]


@pytest.mark.e2e
@needs_sandbox
def test_rebuild_matches_committed() -> None:
    from rsi.evals.humaneval import read_problems
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox

    problems = dict(list(read_problems().items())[:5])
    with Sandbox(SandboxConfig(slots=2, uid_base=64600, uid_count=16)) as sb:
        rebuilt = op.build(problems, lambda jobs: [v.to_dict() for v in sb.run_many(jobs, Limits(timeout_s=5.0))])
    assert len(rebuilt) >= 10
    assert rebuilt == op.builtin_items()[: len(rebuilt)]  # problem order first: the set starts with these


# --------------------------------------------------------------------------------------------------- task
def _fake_generate(right: set[str], by_prompt: dict[str, dict]):  # noqa: ANN202
    def generate(requests: list[dict]) -> list[dict]:
        out = []
        for r in requests:
            assert r["temperature"] == 0.0 and r["max_tokens"] == op.MAX_TOKENS and r["seed"] == op.SEED
            it = by_prompt[r["messages"][0]["content"]]
            text = f"```python\n{it['output']}\n```" if it["id"] in right else "I think it raises an error."
            out.append({"text": text, "num_tokens": 5, "finish_reason": "stop"})
        return out

    return generate


@pytest.mark.unit
def test_run_output_prediction_scores_right_answers() -> None:
    items = op.builtin_items()
    by_prompt = {op.messages(it)[0]["content"]: it for it in items}
    chosen = [it["id"] for it in subset(items, 10)]
    right = set(chosen[:4])
    ctx = EvalContext(generate=_fake_generate(right, by_prompt), judge=_fake_generate(set(), {}), limit=10)
    res = op.run_output_prediction(ctx)
    assert (res.task, res.metric, res.n) == ("output_prediction", "accuracy", 10)
    assert res.value == pytest.approx(0.4) and res.ci95 == wilson(4, 10)
    assert [it["id"] for it in res.items] == chosen
    assert {it["id"] for it in res.items if it["correct"]} == right
    first = res.items[0]
    assert set(first) == {"id", "prediction", "raw", "expected", "correct"} and first["raw"].startswith("```")


@pytest.mark.unit
def test_data_replaces_builtin(tmp_path) -> None:  # noqa: ANN001
    item = {"id": "mine", "code": "def f(a):\n    return (a, a)\n", "input": "1", "output": "(1, 1)"}
    path = tmp_path / "op.jsonl"
    path.write_text(json.dumps(item) + "\n")

    def generate(requests: list[dict]) -> list[dict]:
        return [{"text": "Output: (1, 1)"} for _ in requests]

    ctx = EvalContext(generate=generate, judge=generate, data={"output_prediction": str(path)})
    res = op.run_output_prediction(ctx)
    assert res.n == 1 and res.value == 1.0 and res.items[0]["prediction"] == "(1, 1)"
