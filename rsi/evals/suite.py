"""The held-out evaluation suite: the registry of tasks, running a chosen few into an evaluation directory, and
the `TASK=FILE` arguments that replace a task's built-in items.

    evaluate(["humaneval", "judge_accuracy"], ctx, "evals/v1")  # -> {task: TaskResult}, and evals/v1/ written
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Sized
from dataclasses import replace
from functools import partial
from typing import Any

from rsi.evals.compare import write_eval_dir
from rsi.evals.format_following import run_format_following
from rsi.evals.humaneval import read_problem_items, run_humaneval
from rsi.evals.judge_accuracy import load_pairs, run_judge_accuracy
from rsi.evals.negotiation import run_negotiation
from rsi.evals.output_prediction import read_items, run_output_prediction
from rsi.evals.task import EvalContext, Generate, TaskResult
from rsi.input_files import for_flag

TASKS: dict[str, Callable[[EvalContext], TaskResult]] = {
    "humaneval": run_humaneval,
    "output_prediction": run_output_prediction,
    "judge_accuracy": run_judge_accuracy,
    "format_following": run_format_following,
    "negotiation": run_negotiation,
}
# What `evals.tasks` and `gate.metrics` hold unless set: negotiation is left out, since it needs a partner pool of
# its own (v0's weights) and doubles as a family's held-out metric (+preset=negotiate).
DEFAULT_TASKS = ("humaneval", "output_prediction", "judge_accuracy", "format_following")
# The tasks a `TASK=FILE` argument can give items to, each with the loader that checks the file's every line.
LOADERS: dict[str, Callable[[str], Sized]] = {"humaneval": read_problem_items, "judge_accuracy": load_pairs,
                                              "output_prediction": read_items}


def check_tasks(tasks: Sequence[str]) -> None:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown evaluation task(s) {', '.join(map(repr, unknown))}; known: {', '.join(TASKS)}")
    if not tasks:
        raise ValueError(f"no evaluation task given; known: {', '.join(TASKS)}")


def evaluate(tasks: list[str], ctx: EvalContext, out_dir: str) -> dict[str, TaskResult]:
    """Run `tasks` in order against `ctx`, write `out_dir` (metrics.json + TASK.jsonl), return the results.
    Every name is checked before any task runs, so a typo cannot cost a long evaluation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    check_tasks(tasks)
    results: dict[str, TaskResult] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        bar = progress.add_task("evaluating", total=len(tasks))
        for name in tasks:
            progress.update(bar, description=f"evaluating {name}")
            answers, asked = progress.add_task(f"  {name}: model answers", total=0), [0]

            def expect(n: int, t: Any = answers, asked: list[int] = asked) -> None:
                asked[0] += n
                progress.update(t, total=asked[0])

            def advance(n: int, t: Any = answers) -> None:
                progress.advance(t, n)

            results[name] = TASKS[name](replace(ctx, limit=ctx.limits.get(name, ctx.limit),
                                                generate=counting(ctx.generate, advance, expect),
                                                judge=counting(ctx.judge, advance, expect)))
            progress.remove_task(answers)
            progress.advance(bar)
    write_eval_dir(out_dir, list(results.values()))
    return results


def counting(generate: Generate, advance: Callable[[int], None], expect: Callable[[int], None],
             chunk: int = 16) -> Generate:
    """`generate` asked in chunks of `chunk` requests, all in flight at once (the engines batch concurrent
    calls), reporting each finished chunk's size, so a long evaluation shows answers done of total."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def ask(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        expect(len(requests))
        if not requests:
            return []
        parts = [requests[i:i + chunk] for i in range(0, len(requests), chunk)]
        out: list[list[dict[str, Any]]] = [[] for _ in parts]
        with ThreadPoolExecutor(max_workers=min(len(parts), 64)) as pool:
            futures = {pool.submit(generate, part): k for k, part in enumerate(parts)}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                advance(len(parts[futures[future]]))
        return [answer for part in out for answer in part]

    return ask


def parse_data_args(args: Sequence[str]) -> dict[str, str]:
    """`["TASK=FILE", ...]` -> {task: file}. Fails (ValueError naming the argument, file or line) on a missing
    `=`, an unknown task or one that reads no file, a file that is missing, not UTF-8, empty, or has a line that
    is not a JSON object with the task's fields, so a bad file fails before any model starts."""
    data: dict[str, str] = {}
    for arg in args:
        task, sep, path = arg.partition("=")
        if not sep or not task or not path:
            raise ValueError(f"--data {arg!r}: expected TASK=FILE")
        check_tasks([task])
        if task not in LOADERS:
            raise ValueError(f"--data {arg}: task {task!r} reads no data file (those that do: {', '.join(LOADERS)})")
        if not for_flag("--data", partial(LOADERS[task], path)):
            raise ValueError(f"--data {path}: no items in the file")
        data[task] = path
    return data
