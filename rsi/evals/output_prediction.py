"""Output prediction ("what does this call return?"), in CRUXEval's item format.

An item is `{"id", "code", "input", "output"}`: `code` defines `f`, the call is `f(<input>)` and `output` is the
returned value's repr. A prediction is right when it is the same Python value: both sides are read with
`ast.literal_eval` and compared with `==` (Python's semantics, as CRUXEval's `assert f(input) == output` check:
1 == 1.0 == True count equal, (1, 2) != [1, 2], dict and set order do not matter); when either side is not a
literal, the stripped texts must be equal.

The built-in set is derived offline from HumanEval: each canonical solution, docstrings stripped and the entry
point renamed `f` (the name and the doc examples would give answers away), called on the literal arguments of
its own test asserts; the true output is what the call returned in the sandbox, twice the same. It is held-out
evaluation data, never training data.

    python -m rsi.evals.output_prediction build --out FILE [--per-problem 4] [--problems N]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, RunJobs, TaskResult, read_jsonl, subset
from rsi.sandbox.executor import humaneval_job

TASK = "output_prediction"
DATA = Path(__file__).parent / "data" / "output_prediction.jsonl"
FIELDS = ("id", "code", "input", "output")
MAX_TOKENS = 64  # a literal answer; a model that explains instead is cut off and scored wrong
SEED = 0
MAX_CHARS = 200  # inputs and outputs longer than this are not a fair thing to ask a model to type out
PER_PROBLEM = 4  # inputs kept per HumanEval problem, so a few problems with many asserts do not dominate
OUT_MARK = "OUTPUT:"


# ------------------------------------------------------------------------------------------------- items
def item_id(code: str, inp: str) -> str:
    return hashlib.sha256(json.dumps([code, inp]).encode()).hexdigest()[:16]


def read_items(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    return read_jsonl(path, FIELDS, kind=str)


def builtin_items() -> list[dict[str, str]]:
    return read_items(DATA)


# ----------------------------------------------------------------------------------------------- scoring
def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def same_output(prediction: str, reference: str) -> bool:
    ok_p, p = _literal(prediction)
    ok_r, r = _literal(reference)
    if ok_p and ok_r:
        try:
            return bool(p == r)
        except Exception:  # e.g. comparing deeply nested values
            return False
    return prediction.strip() == reference.strip()


# ------------------------------------------------------------------------------------- prompt and answer
def messages(item: dict[str, str]) -> list[dict[str, str]]:
    content = (
        "Here is a Python function:\n\n```python\n" + item["code"].rstrip() + "\n```\n\n"
        f"What does the call `f({item['input']})` return? Reply with the returned value only, written as a "
        "Python literal (as `repr` would print it), with no explanation."
    )
    return [{"role": "user", "content": content}]


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)
_PREFIX = re.compile(r"^(?:the\s+)?(?:answer|output|result|returns?|value)(?:\s+is)?\s*[:=]?\s*", re.I)


def _from_line(line: str) -> str:
    s = line.strip()
    if len(s) >= 2 and s[0] == s[-1] == "`":
        s = s.strip("`").strip()
    s = _PREFIX.sub("", s) if not _literal(s)[0] else s
    if _literal(s)[0]:
        return s
    # "assert f(3) == 5" or "f(3) == 5": the value is after an "==" (the first one whose tail is a literal,
    # since the value itself may hold "==" inside a string).
    for m in re.finditer("==", s):
        tail = s[m.end() :].strip().rstrip(".;").strip()
        if _literal(tail)[0]:
            return tail
    return s.rstrip(".").strip() if _literal(s.rstrip(".").strip())[0] else s


def extract_answer(text: str) -> str:
    """The predicted literal: a fenced block's content, else the whole reply if it is one literal (a value
    over several lines), else its first non-empty line; prefixes like "Output:" and "... ==" removed."""
    m = _FENCE.search(text)
    body = (m.group(1) if m else text).strip()
    if _literal(body)[0]:
        return body
    first = next((ln for ln in body.splitlines() if ln.strip()), "")
    return _from_line(first)


def run_output_prediction(ctx: EvalContext) -> TaskResult:
    path = ctx.data.get(TASK)
    items = subset(read_items(path) if path else builtin_items(), ctx.limit)
    requests = [
        {"messages": messages(it), "max_tokens": MAX_TOKENS, "temperature": 0.0, "seed": SEED, "json_schema": None}
        for it in items
    ]
    completions = ctx.generate(requests) if requests else []
    scored = []
    for it, c in zip(items, completions):
        raw = str(c.get("text", ""))
        pred = extract_answer(raw)
        ok = int(same_output(pred, it["output"]))
        scored.append({"id": it["id"], "prediction": pred, "raw": raw, "expected": it["output"], "correct": ok})
    k, n = sum(s["correct"] for s in scored), len(scored)
    return TaskResult(TASK, "accuracy", k / n if n else 0.0, wilson(k, n), n, scored)


# ------------------------------------------------------------------------------------- building the set
class _AsF(ast.NodeTransformer):
    """Entry point renamed `f` (calls to it too), docstrings dropped."""

    def __init__(self, entry_point: str) -> None:
        self.entry_point = entry_point

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.entry_point:
            node.id = "f"
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        if node.name == self.entry_point:
            node.name = "f"
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            if isinstance(body[0].value.value, str):
                body = body[1:]
        node.body = body or [ast.Pass()]
        self.generic_visit(node)
        return node


def as_f(source: str, entry_point: str) -> str | None:
    """The solution with its entry point as `f`; None when `f` already names something else there."""
    tree = ast.parse(source)
    used = {getattr(n, "id", None) or getattr(n, "arg", None) or getattr(n, "name", None) for n in ast.walk(tree)}
    if entry_point != "f" and "f" in used:
        return None
    return ast.unparse(_AsF(entry_point).visit(tree)) + "\n"


def call_inputs(test: str) -> list[str]:
    """Argument texts of `candidate(...)` calls in `check` whose arguments are all literals, in test order."""
    out = []
    for fn in ast.parse(test).body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "check"):
            continue
        calls = sorted((n for n in ast.walk(fn) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
        for node in calls:
            if not (isinstance(node.func, ast.Name) and node.func.id == "candidate"):
                continue
            if not all(_literal(ast.unparse(a))[0] for a in [*node.args, *(k.value for k in node.keywords)]):
                continue  # a variable or an expression: not something the question can show as is
            args = [ast.unparse(a) for a in node.args] + [f"{k.arg}={ast.unparse(k.value)}" for k in node.keywords]
            out.append(", ".join(args))
    return list(dict.fromkeys(out))


def probe_job(code: str, inp: str) -> dict[str, Any]:
    """A sandbox job whose check reports `repr(f(<input>))` as its failure message: the value is rebuilt from
    plain builtins by the judge before repr (rsi.sandbox.codec), so tuples and sets keep their type."""
    tests = f"def check(candidate):\n    raise AssertionError({OUT_MARK!r} + repr(candidate({inp})))\n"
    return humaneval_job(code, tests, "f")


def _output(verdict: dict[str, Any]) -> str | None:
    msg = str(verdict.get("message", ""))
    if verdict.get("status") != "fail" or not msg.startswith(OUT_MARK):
        return None  # raised, timed out, ...: not a question with an answer
    return msg[len(OUT_MARK) :]


def _keep(out: str | None) -> bool:
    if out is None or len(out) > MAX_CHARS:
        return False
    ok, value = _literal(out)
    # Sets print in hash order, which can change between runs for strings: a committed repr must be stable.
    return ok and not _has_set(value)


def _has_set(v: Any) -> bool:
    if isinstance(v, (set, frozenset)):
        return True
    if isinstance(v, dict):
        return any(_has_set(x) for kv in v.items() for x in kv)
    return isinstance(v, (list, tuple)) and any(_has_set(x) for x in v)


def build(problems: dict[str, dict[str, Any]], run_jobs: RunJobs, per_problem: int = PER_PROBLEM) -> list[dict]:
    """Items from HumanEval problems, in problem order then test order; each call run twice, kept when both
    runs returned the same short literal."""
    cands = []
    for p in problems.values():
        code = as_f(p["prompt"] + p["canonical_solution"], p["entry_point"])
        if code is None:
            continue
        inputs = [i for i in call_inputs(p["test"]) if len(i) <= MAX_CHARS]
        cands += [(code, inp) for inp in inputs]
    jobs = [probe_job(code, inp) for code, inp in cands]
    first, second = run_jobs(jobs), run_jobs(jobs)
    items, per_code, seen = [], {}, set()
    for (code, inp), v1, v2 in zip(cands, first, second):
        out = _output(v1)
        iid = item_id(code, inp)
        if not _keep(out) or out != _output(v2) or iid in seen or per_code.get(code, 0) >= per_problem:
            continue
        seen.add(iid)
        per_code[code] = per_code.get(code, 0) + 1
        items.append({"id": iid, "code": code, "input": inp, "output": out})
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rsi.evals.output_prediction")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="derive the built-in items from HumanEval, running each call in the sandbox")
    b.add_argument("--out", required=True)
    b.add_argument("--per-problem", type=int, default=PER_PROBLEM)
    b.add_argument("--problems", type=int, default=None, help="only the first N problems")
    b.add_argument("--slots", type=int, default=max(1, os.cpu_count() or 1))
    b.add_argument("--uid-base", type=int, default=None)
    args = p.parse_args(argv)
    from rsi.evals.humaneval import read_problems
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox

    problems = dict(list(read_problems().items())[: args.problems])
    cfg = SandboxConfig(slots=args.slots, **({"uid_base": args.uid_base} if args.uid_base else {}))
    with Sandbox(cfg) as sb:
        items = build(problems, lambda jobs: [v.to_dict() for v in sb.run_many(jobs, Limits(timeout_s=5.0))],
                      args.per_problem)
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    os.replace(args.out + ".tmp", args.out)
    print(f"{len(items)} items from {len(problems)} problems -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
