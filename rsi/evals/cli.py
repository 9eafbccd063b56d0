"""`rsi eval <verb>`: run the held-out suite on one model, compare two evaluation directories, score HumanEval
samples.

    rsi eval run --model M --tasks humaneval,output_prediction,judge_accuracy,format_following
                 [--limit N] [--data TASK=FILE ...] [--partner V0] [--backend vllm|hf] --out DIR
    rsi eval compare DIR_A DIR_B [--json]
    rsi eval humaneval --samples S.jsonl [...]

`M` is a preset (tiny, smollm2-135m) or a model folder, such as a run's checkpoint. Bad input (an unknown task,
a missing or malformed data file, a folder without weights) exits with status 2 before Ray starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsi.cli_args import ArgParser, bounded_int
from rsi.evals.task import EvalContext, TaskResult
from rsi.input_files import check_out_dir, read_json

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle
    from rsi.sandbox.pool import SandboxPool

USAGE = "usage: rsi eval {run,compare,humaneval} ...  (rsi eval VERB --help for its options)"
PRESETS = ("tiny", "smollm2-135m")
SANDBOX_TASKS = {"humaneval", "output_prediction"}  # tasks that execute the model's code
DEFAULT_TASKS = "humaneval,output_prediction,judge_accuracy,format_following"
MAX_LIMIT = 1_000_000  # items per task: far above any held-out set, short of a typo's 10**30


class UsageError(ValueError):
    """Input `rsi eval run` refuses before starting anything: exit status 2."""


def resolve_model(model: str, backend: str) -> str:
    """The folder the engine loads: a preset's (built or cached), or `model` itself once it is known to hold a
    loadable model with weights."""
    # Imported where needed: rsi.config loads torch, seconds that a refused folder should not wait for.
    if model in PRESETS:
        from rsi.models import resolve_model_path

        return resolve_model_path(model, None)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise UsageError(f"--model {model}: neither a preset ({', '.join(PRESETS)}) nor a model folder")
    if (path / "adapter_config.json").is_file():  # a LoRA run's checkpoint: served on its recorded base
        return _resolve_adapter(model, path, backend)
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        # Checked here first: the commonest mistake (a run folder, not its checkpoint) is named without
        # importing transformers.
        raise UsageError(f"--model {model}: no weights (*.safetensors or *.bin) in this folder")
    from rsi.config import ConfigError
    from rsi.preflight import check_model

    try:
        check_model(str(path.resolve()), backend)
    except ConfigError as e:
        raise UsageError(f"--model {model}: {str(e).removeprefix('model.path: ')}") from e
    return str(path.resolve())


def _resolve_adapter(model: str, path: Path, backend: str) -> str:
    from rsi.config import ConfigError
    from rsi.preflight import check_model
    from rsi.train.lora import base_hash, read_meta

    try:
        meta = read_meta(path)
        if base_hash(meta["base_model"]) != meta["base_hash"]:
            raise ValueError(f"its base {meta['base_model']} has other weights than it was trained on")
        check_model(meta["base_model"], backend, lora=True)
    except (ConfigError, OSError, ValueError, KeyError) as e:
        raise UsageError(f"--model {model}: {str(e).removeprefix('model.path: ')}") from e
    return str(path.resolve())


def check_families(families: list[str]) -> None:
    """Every name a task family: format following asks each for its prompts only once the model is up."""
    from rsi.tasks import get_family

    if not families:
        raise UsageError("--families: no task family given")
    for name in families:
        try:
            get_family(name)
        except (KeyError, TypeError) as e:
            raise UsageError(f"--families: {e.args[0] if e.args else e}") from e


def max_model_len(path: str, cap: int = 4096) -> int:
    """The model's context, capped: the presets' own lengths (tiny 4096, SmolLM2 2048) without a config."""
    try:
        return min(cap, int(read_json(Path(path) / "config.json", dict).get("max_position_embeddings") or 2048))
    except (TypeError, ValueError):
        return 2048


def _parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="rsi eval run", description="Score one model on the held-out suite.")
    p.add_argument("--model", required=True, help=f"preset ({', '.join(PRESETS)}) or model folder")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks of rsi.evals.suite.TASKS")
    p.add_argument("--limit", type=bounded_int(1, MAX_LIMIT), default=None,
                   help="items per task (a deterministic subset)")
    p.add_argument("--data", action="append", default=[], metavar="TASK=FILE", help="replace a task's items")
    p.add_argument("--families", default="programming", help="task families for format_following")
    p.add_argument("--partner", default=None,
                   help="preset or model folder of the frozen opponent in negotiation (default: --model itself); "
                        "give v0 to compare versions against the same opponent")
    p.add_argument("--backend", choices=("vllm", "hf"), default="vllm")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--out", required=True, help="evaluation directory to write")
    return p


def run(argv: list[str]) -> int:
    from rsi.evals.suite import check_tasks, parse_data_args

    args = _parser().parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    try:
        check_tasks(tasks)
        check_families(families)
        data = parse_data_args(args.data)
        check_out_dir(args.out, "--out", empty=True)
        model_path = resolve_model(args.model, args.backend)
        args.partner_path = resolve_model(args.partner, args.backend) if args.partner else model_path
    except (UsageError, ValueError) as e:
        print(f"rsi eval run: {e}", file=sys.stderr)
        return 2
    results = _evaluate_with_engine(args, tasks, data, families, model_path)
    print_table(results)
    print(f"evaluation written to {args.out}", file=sys.stderr)
    return 0


def _evaluate_with_engine(args: argparse.Namespace, tasks: list[str], data: dict[str, str], families: list[str],
                          model_path: str) -> dict[str, TaskResult]:
    """Start what the tasks need (local Ray, one engine, a sandbox pool), evaluate, and stop what was started."""
    import dataclasses

    import ray

    from rsi.evals.suite import evaluate
    from rsi.inference import EngineSpec, start_engine
    from rsi.inference.engine import adapter_spec

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(4, os.cpu_count() or 1))
    engine: PoolHandle | None = None
    partner: PoolHandle | None = None
    sandbox: SandboxPool | None = None
    try:
        gpus = _gpus()
        spec = adapter_spec(model_path) or EngineSpec(model_path=model_path)
        spec = dataclasses.replace(spec, backend=args.backend, dtype=args.dtype, kv_cache_gb=0.0 if gpus else 0.5,
                                   max_model_len=max_model_len(spec.model_path))
        engine = start_engine(spec, num_gpus=1 if gpus else 0)
        if "negotiation" in tasks and args.partner_path != model_path:
            # a second engine only where the opponent differs from the model evaluated (a GPU each, on GPUs)
            partner = start_engine(dataclasses.replace(spec, model_path=args.partner_path,
                                                       max_model_len=max_model_len(args.partner_path)),
                                   num_gpus=1 if gpus > 1 else 0)
        if SANDBOX_TASKS & set(tasks):
            from rsi.sandbox.config import SandboxConfig
            from rsi.sandbox.pool import SandboxPool

            sandbox = SandboxPool(SandboxConfig(), num_workers=1, num_cpus_per_worker=0)

        def asking(actor: PoolHandle) -> Any:
            return lambda reqs: ray.get(actor.generate.remote(reqs)) if reqs else []

        generate = asking(engine)
        # The model judges itself, as in the loop without a separate judge pool.
        ctx = EvalContext(generate=generate, judge=generate, run_jobs=sandbox.run_dicts if sandbox else None,
                          limit=args.limit, data=data, families=families,
                          partner=asking(partner) if partner is not None else generate)
        return evaluate(tasks, ctx, args.out)
    finally:
        if sandbox is not None:
            sandbox.close()
        for actor in (engine, partner):
            if actor is not None:
                ray.kill(actor)
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
