"""`rsi` command line. `rsi run` is a Hydra app (overrides, multirun sweeps); the other verbs are argparse."""

from __future__ import annotations

import errno
import sys
from pathlib import Path


def conf_dir() -> Path:
    """The Hydra presets: rsi/conf/ where rsi is installed (the build copies them there), else the checkout's
    conf/ beside the package (editable installs, `ray job submit --working-dir .`)."""
    here = Path(__file__).resolve().parent
    installed = here / "conf"
    return installed if (installed / "config.yaml").is_file() else here.parent / "conf"


CONF_DIR = conf_dir()

USAGE = """usage: rsi <command> [args]

commands:
  run [overrides…]            the self-improvement loop (Hydra: rsi run model=tiny loop.iterations=2 run.dir=/tmp/r)
  model build NAME [--out D]  build/convert a preset model offline (tiny | smollm2-135m) and print its folder
  sandbox run …               run a program against tests in the sandbox, print a Verdict
  eval run --model M --out D  held-out evaluation of a model (--tasks, --limit N, --data TASK=FILE)
  eval compare DIR_A DIR_B    paired comparison of two evaluations: delta, 95% CI, McNemar p (--json)
  eval humaneval --samples S  HumanEval pass@k of a samples file, through the sandbox
  report RUN_DIR              RUN_DIR/report/index.html: metrics per version, gate decisions, corpus plots
  corpus stats DIR            rows, parse rates, position bias, judge accuracy vs execution, pairs per step
  corpus export DIR OUT       the preferences as a DPO-ready dataset (--format trl | jsonl)
"""


def run_main(overrides: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    from rsi.cluster_env import ClusterError
    from rsi.config import ConfigError, register_schema, to_dataclass

    if "--help" in overrides or "-h" in overrides:  # Hydra's own: --hydra-help
        from rsi.console import run_help

        print(run_help())
        return 0
    register_schema()
    status = {"code": 0}

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _app(dcfg: DictConfig) -> str:
        from rsi.loop import run_loop, teardown
        from rsi.sweep import job_run_dir

        sweep_job_dir = job_run_dir()
        if sweep_job_dir:  # a multirun job: its own folder under the sweep dir
            dcfg.run.dir = sweep_job_dir
        try:
            teardown(run_loop(to_dataclass(dcfg)))  # a sweep's next job starts its own pools
        except (ConfigError, ClusterError) as e:
            print(f"rsi: config error: {e}", file=sys.stderr)
            status["code"] = 2
            return f"config error: {e}"
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Everything committed so far is whole (rsi.corpus.stream): the run continues where it stopped.
            print(f"rsi: no space left on the device while writing {e.filename or dcfg.run.dir}: {e.strerror}. "
                  "Free some space, then rerun with run.resume=true to continue.", file=sys.stderr)
            status["code"] = 1
            return f"no space left: {e.filename or dcfg.run.dir}"
        return "ok"

    argv = sys.argv
    sys.argv = ["rsi run", *overrides]
    try:
        _app()
    except ConfigError as e:
        print(f"rsi: config error: {e}", file=sys.stderr)
        return 2
    finally:
        sys.argv = argv
    return status["code"]


def model_main(args: list[str]) -> int:
    import argparse

    from rsi.models import build_tiny_model, ensure_smollm2

    parser = argparse.ArgumentParser(prog="rsi model")
    parser.add_argument("action", choices=["build"])
    parser.add_argument("name", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--out", default=None)
    ns = parser.parse_args(args)
    if ns.name == "tiny":
        from rsi.models.smollm2 import cache_root

        print(build_tiny_model(ns.out or cache_root() / "models" / "tiny"))
    else:
        print(ensure_smollm2(ns.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        return run_main(rest)
    if cmd == "model":
        return model_main(rest)
    if cmd == "sandbox":
        from rsi.sandbox.cli import main as sandbox_main

        return sandbox_main(rest[1:] if rest[:1] == ["run"] else rest)
    if cmd == "eval":
        from rsi.evals.cli import main as eval_main

        return eval_main(rest)
    if cmd == "report":
        from rsi.report.cli import main as report_main

        return report_main(rest)
    if cmd == "corpus":
        from rsi.corpus.cli import main as corpus_main

        return corpus_main(rest)
    print(f"rsi: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
