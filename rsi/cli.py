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
  model merge ADAPTER --out D a LoRA checkpoint merged into its base: a plain HF folder (export)
  sandbox run …               run a program against tests in the sandbox, print a Verdict
  eval run --model M --out D  held-out evaluation of a model (--tasks, --limit N, --data TASK=FILE)
  eval compare DIR_A DIR_B    paired comparison of two evaluations: delta, 95% CI, McNemar p (--json)
  eval humaneval --samples S  HumanEval pass@k of a samples file, through the sandbox
  report RUN_DIR              RUN_DIR/report/index.html: metrics per version, gate decisions, corpus plots
  corpus stats DIR            rows, parse rates, position bias, judge accuracy vs execution, pairs per step
  corpus export DIR OUT       the preferences as a DPO-ready dataset (--format trl | jsonl)
"""


def run_main(overrides: list[str]) -> int:
    if "--help" in overrides or "-h" in overrides:  # Hydra's own: --hydra-help
        print(run_help())
        return 0
    bad = unparsable_override(overrides)
    if bad:  # before the imports below, which load torch
        print(f"rsi: {bad}", file=sys.stderr)
        return 2
    import hydra
    from omegaconf import DictConfig

    from rsi.cluster_env import ClusterError
    from rsi.config import ConfigError, register_schema, to_dataclass
    from rsi.input_files import InputFileError
    from rsi.run_dir import RunDirError

    register_schema()
    status = {"code": 0}

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _app(dcfg: DictConfig) -> str:
        from rsi.loop import run_loop
        from rsi.sweep import job_run_dir

        sweep_job_dir = job_run_dir()
        if sweep_job_dir:  # a multirun job: its own folder under the sweep dir
            dcfg.run.dir = sweep_job_dir
        try:
            run_loop(to_dataclass(dcfg))  # its pools end with it: a sweep's next job starts its own
        except InputFileError as e:  # a file of the run folder a resume reads (a record, a manifest)
            print(f"rsi: {e}", file=sys.stderr)
            status["code"] = 2
            return f"bad file: {e}"
        except (ConfigError, ClusterError, RunDirError) as e:
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


def unparsable_override(args: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read, as one line saying how to write it; None if all parse.
    Hydra itself answers with a lexer trace (an unquoted non-ASCII path is the common case)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    takes_value = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                   "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}
    skip = False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = not skip and arg in takes_value
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            key, _, value = arg.partition("=")
            return (f"cannot read the override {arg!r}: quote a value with spaces, non-ASCII or special "
                    f"characters, as {key}='{value}' (in a shell: \"{key}='{value}'\")")
    return None


def model_main(args: list[str]) -> int:
    from rsi.cli_args import ArgParser
    from rsi.input_files import InputFileError, check_out_dir
    from rsi.models import build_tiny_model, ensure_smollm2
    from rsi.models.folders import ModelFolderError

    if args[:1] == ["merge"]:
        return merge_main(args[1:])
    parser = ArgParser(prog="rsi model")
    parser.add_argument("action", choices=["build", "merge"])
    parser.add_argument("name", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--out", default=None)
    ns = parser.parse_args(args)
    try:
        if ns.out is not None:  # before the build, which takes a while and would fail only at its first write
            check_out_dir(ns.out, "--out")
        if ns.name == "tiny":
            from rsi.models.smollm2 import cache_root

            print(build_tiny_model(ns.out or cache_root() / "models" / "tiny"))
        else:
            print(ensure_smollm2(ns.out))
    except (ModelFolderError, InputFileError) as e:
        print(f"rsi model build: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not a write: a missing source package, say
            print(f"rsi model build: {e}", file=sys.stderr)
            return 2
        print(f"rsi model build: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


def merge_main(args: list[str]) -> int:
    """`rsi model merge ADAPTER --out D`: the adapter folder of a train.lora run folded into its recorded base."""
    from rsi.cli_args import ArgParser
    from rsi.input_files import InputFileError, check_out_dir

    parser = ArgParser(prog="rsi model merge")
    parser.add_argument("adapter", help="adapter folder: a checkpoint of a run with train.lora.enabled=true")
    parser.add_argument("--out", required=True, help="empty or new folder for the merged HF model")
    ns = parser.parse_args(args)
    adapter = Path(ns.adapter).expanduser()
    try:
        if not (adapter / "adapter_config.json").is_file():
            raise InputFileError(f"{ns.adapter}: not an adapter folder (no adapter_config.json); a full-weight "
                                 "checkpoint is an HF folder already")
        check_out_dir(ns.out, "--out", empty=True)
        from rsi.train.lora import merge_adapter

        print(merge_adapter(str(adapter), ns.out))
    except (InputFileError, FileNotFoundError, ValueError) as e:
        print(f"rsi model merge: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"rsi model merge: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


# ---- rsi run --help: every key, its default and the comment of the class that defines it ---------------------
def field_comments(cls: type) -> dict[str, str]:
    """A dataclass's comment per field, read from its source (the comments are the docs): the trailing
    `# comment`, else the comment lines right above the field."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        m = re.match(r"^\s+(\w+):[^=]*=([^#]*)(?:#\s*(.+))?$", line)
        if m and not line.lstrip().startswith("#"):
            text = m.group(3) or " ".join(above)
            if text:
                out[m.group(1)] = text.strip() if len(text) <= 110 else text[:107].rstrip() + "…"
            above = []
        elif line.strip().startswith("#"):
            above.append(line.strip().lstrip("#").strip())
        else:
            above = []
    return out


def run_help() -> str:
    """Every key of RsiConfig's sections, in the order the class declares them, with its default and its
    comment; a nested dataclass (sandbox.limits) is listed key by key too."""
    from dataclasses import fields, is_dataclass

    from rsi.config import RsiConfig
    from rsi.tasks import BUILTIN

    cfg = RsiConfig()
    lines = ["usage: rsi run [KEY=VALUE …] [GROUP=OPTION …] [-m KEY=V1,V2 …] [--cfg job]", "",
             "The self-improvement loop as a Hydra app. Groups: model=tiny|smollm2-135m|hf, backend=vllm|hf,",
             f"tasks=[{','.join(BUILTIN)}] (any subset). `--cfg job` prints the composed config; `-m` sweeps",
             "(each job in run.dir/sweep-<time>/N, a summary row per job). Keys, defaults and what they do:", ""]
    top = field_comments(RsiConfig)

    def section(prefix: str, value: object) -> None:
        comments = field_comments(type(value))
        for f in fields(value):  # type: ignore[arg-type]
            default = getattr(value, f.name)
            if is_dataclass(default):
                section(f"{prefix}.{f.name}", default)
                continue
            text = f"  {prefix}.{f.name}={_show_default(default)}"
            lines.append(f"{text:<44} {comments.get(f.name, '')}".rstrip())

    for f in fields(RsiConfig):
        value = getattr(cfg, f.name)
        if f.name in top:
            lines.append(f"{f.name}: {top[f.name]}")
        if is_dataclass(value):
            section(f.name, value)
        elif f.name == "tasks":
            lines.append("  tasks.<family>.{seeds,candidates,max_tokens,temperature,…}  each family's sizes "
                         "(rsi/conf/tasks/*.yaml)")
        else:
            lines.append(f"  {f.name}={_show_default(value)}")
    return "\n".join(lines)


def _show_default(value: object) -> str:
    from rsi.choice import Choice

    if isinstance(value, Choice):
        return f"{value} ({'|'.join(m.value for m in type(value))})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


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
    print(f"rsi: unknown command {cmd!r} (rsi --help lists the commands)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
