"""`rsi eval <verb>`: run the held-out suite on one model, compare two evaluation directories, score HumanEval
samples.

    rsi eval run --model M --tasks humaneval,output_prediction,judge_accuracy,format_following
                 [--limit N] [--data TASK=FILE ...] [--backend vllm|hf] --out DIR
    rsi eval compare DIR_A DIR_B [--json]
    rsi eval humaneval --samples S.jsonl [...]

`M` is a preset (tiny, smollm2-135m) or a model folder, such as a run's checkpoint. Bad input (an unknown task,
a missing or malformed data file, a folder without weights) exits with status 2 before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsi.evals.task import EvalContext, TaskResult

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle
    from rsi.sandbox.pool import SandboxPool

USAGE = "usage: rsi eval {run,compare,humaneval} ...  (rsi eval VERB --help for its options)"
PRESETS = ("tiny", "smollm2-135m")
SANDBOX_TASKS = {"humaneval", "output_prediction"}  # tasks that execute the model's code
DEFAULT_TASKS = "humaneval,output_prediction,judge_accuracy,format_following"


class UsageError(ValueError):
    """Input `rsi eval run` refuses before starting anything: exit status 2."""


def resolve_model(model: str, backend: str) -> str:
    """The folder the engine loads: a preset's (built or cached), or `model` itself once it is known to hold a
    loadable model with weights."""
    from rsi.config import ConfigError
    from rsi.models import resolve_model_path
    from rsi.preflight import check_model

    if model in PRESETS:
        return resolve_model_path(model, None)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise UsageError(f"--model {model}: neither a preset ({', '.join(PRESETS)}) nor a model folder")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        # Checked here first: the commonest mistake (a run folder, not its checkpoint) is named without
        # importing transformers.
        raise UsageError(f"--model {model}: no weights (*.safetensors or *.bin) in this folder")
    try:
        check_model(str(path.resolve()), backend)
    except ConfigError as e:
        raise UsageError(f"--model {model}: {str(e).removeprefix('model.path: ')}") from e
    return str(path.resolve())


def check_out_dir(out: str) -> None:
    """Before any work: `out` is new or empty, and writable, so an evaluation never ends in a failed write and
    never replaces an earlier one."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out}: is a file; give a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"--out {out}: already holds files (an earlier evaluation?); give a new or empty folder")
    import tempfile

    existing = next(p for p in (path, *path.parents) if p.exists())
    try:  # a file made and removed where the folder will be made: nothing is left behind on a refusal
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror})") from e


def max_model_len(path: str, cap: int = 4096) -> int:
    """The model's context, capped: the presets' own lengths (tiny 4096, SmolLM2 2048) without a config."""
    try:
        with open(Path(path) / "config.json", encoding="utf-8") as f:
            return min(cap, int(json.load(f).get("max_position_embeddings") or 2048))
    except (OSError, ValueError):
        return 2048


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rsi eval run", description="Score one model on the held-out suite.")
    p.add_argument("--model", required=True, help=f"preset ({', '.join(PRESETS)}) or model folder")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks of rsi.evals.suite.TASKS")
    p.add_argument("--limit", type=int, default=None, help="items per task (a deterministic subset)")
    p.add_argument("--data", action="append", default=[], metavar="TASK=FILE", help="replace a task's items")
    p.add_argument("--families", default="programming", help="task families for format_following")
    p.add_argument("--backend", choices=("vllm", "hf"), default="vllm")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", required=True, help="evaluation directory to write")
    return p


def run(argv: list[str]) -> int:
    from rsi.evals.suite import check_tasks, parse_data_args

    args = _parser().parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        check_tasks(tasks)
        if args.limit is not None and args.limit < 1:
            raise UsageError(f"--limit {args.limit}: must be at least 1")
        data = parse_data_args(args.data)
        check_out_dir(args.out)
        model_path = resolve_model(args.model, args.backend)
    except (UsageError, ValueError) as e:
        print(f"rsi eval run: {e}", file=sys.stderr)
        return 2
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    results = _evaluate_with_engine(args, tasks, data, families, model_path)
    print_table(results)
    print(f"evaluation written to {args.out}", file=sys.stderr)
    return 0


def _evaluate_with_engine(args: argparse.Namespace, tasks: list[str], data: dict[str, str], families: list[str],
                          model_path: str) -> dict[str, TaskResult]:
    """Start what the tasks need (local Ray, one engine, a sandbox pool), evaluate, and stop what was started."""
    import ray

    from rsi.evals.suite import evaluate
    from rsi.inference import EngineSpec, start_engine

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(4, os.cpu_count() or 1))
    engine: PoolHandle | None = None
    sandbox: SandboxPool | None = None
    try:
        gpus = _gpus()
        spec = EngineSpec(model_path=model_path, backend=args.backend, dtype=args.dtype,
                          max_model_len=max_model_len(model_path), kv_cache_gb=0.0 if gpus else 0.5)
        engine = start_engine(spec, num_gpus=1 if gpus else 0)
        if SANDBOX_TASKS & set(tasks):
            from rsi.sandbox.config import SandboxConfig
            from rsi.sandbox.pool import SandboxPool

            sandbox = SandboxPool(SandboxConfig(), num_workers=1, num_cpus_per_worker=0)

        def generate(reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return ray.get(engine.generate.remote(reqs)) if reqs else []

        # The model judges itself, as in the loop without a separate judge pool.
        ctx = EvalContext(generate=generate, judge=generate, run_jobs=sandbox.run_dicts if sandbox else None,
                          limit=args.limit, data=data, families=families)
        return evaluate(tasks, ctx, args.out)
    finally:
        if sandbox is not None:
            sandbox.close()
        if engine is not None:
            ray.kill(engine)
        if started_ray:
            ray.shutdown()


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _fmt_ci(ci: Any) -> str:
    lo, hi = ci
    return f"[{lo:.3f}, {hi:.3f}]"


def print_table(results: dict[str, TaskResult]) -> None:
    """One row per task's metric, then its extra metrics indented under it."""
    from rich.console import Console
    from rich.table import Table

    from rsi.tables import add_text_row

    table = Table(title="held-out evaluation")
    for col in ("task", "metric", "value", "95% CI", "n"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for name, r in results.items():
        add_text_row(table, name, r.metric, f"{r.value:.3f}", _fmt_ci(r.ci95), str(r.n))
        for key, m in r.extra.items():
            add_text_row(table, "", f"  {key}", f"{m['value']:.3f}", _fmt_ci(m["ci95"]), str(m["n"]))
    Console(width=None if sys.stdout.isatty() else 130).print(table)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb, rest = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "run":
        return run(rest)
    if verb == "compare":
        from rsi.evals.compare import main as compare_main

        return compare_main(rest)
    if verb == "humaneval":
        from rsi.evals.humaneval import main as humaneval_main

        return humaneval_main(rest)
    print(USAGE, file=sys.stderr)
    return 0 if verb in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
