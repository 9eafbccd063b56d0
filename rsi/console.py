"""What a user sees of `rsi run`: progress with counts, third-party log noise kept in `run.dir/logs/` (unless
`log.verbose=true`), and `rsi run --help` built from the config's own comments."""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

# Loggers of the libraries rsi drives; their INFO/WARNING lines go to run.dir/logs/driver.log unless verbose.
THIRD_PARTY = ("vllm", "ray", "transformers", "torch", "triton", "datasets", "deepspeed", "trl", "accelerate",
               "filelock", "urllib3", "httpx", "huggingface_hub", "tensorboard", "absl")


@dataclass
class LogConfig:
    verbose: bool = False  # true: vLLM/Ray/transformers logs on the console too; false: only in run.dir/logs/


@contextmanager
def third_party_logs(run_dir: Path, verbose: bool) -> Iterator[Path]:
    """Within the block, the driver's third-party loggers write to `run_dir/logs/driver.log` instead of the
    console, and whatever reaches file descriptor 2 (torch's and vLLM's own handlers, C++ logs of Ray and vLLM)
    goes to `run_dir/logs/stderr.log`; both are restored afterwards, so an error raised out of the block is
    printed as usual. The actors' own output stays in Ray's session logs (`ray_logs_link`)."""
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if verbose:
        yield logs
        return
    with _stderr_to(logs / "stderr.log"), _loggers_to(logs / "driver.log"), _raylet_warnings_to(logs / "driver.log"):
        yield logs


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _loggers_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.propagate, logger.level)
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
    # Libraries give some of their own child loggers handlers of their own (Ray Data's `ray.data`): within the
    # block those pass their records up to the file too.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (isinstance(logger, logging.Logger) and name not in saved and name.split(".")[0] in THIRD_PARTY
                and (logger.handlers or not logger.propagate)):
            saved[name] = (logger.handlers[:], logger.propagate, logger.level)
            logger.handlers, logger.propagate = [], True
    try:
        yield
    finally:
        for name, (handlers, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate, logger.level = handlers, propagate, level
        handler.close()


@contextmanager
def _raylet_warnings_to(path: Path) -> Iterator[None]:
    """Ray's driver prints what the raylet publishes ("WARNING: 18 PYTHON worker processes have been started
    …") to stdout from a thread of its own, through `ray._private.worker.print_to_stdstream`, whatever
    `log_to_driver` says. Within the block, WARNING lines go to `path`; anything else (a worker killed for
    memory, an actor that died) is still printed, since a user must see it."""
    import ray._private.worker as ray_worker

    printer = ray_worker.print_to_stdstream

    def print_or_file(data: dict, ignore_prefix: bool) -> None:
        lines = data.get("lines") or []
        if data.get("pid") != "raylet" or not all(str(line).startswith("WARNING") for line in lines):
            printer(data, ignore_prefix)
            return
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(f"raylet: {line}\n" for line in lines)

    ray_worker.print_to_stdstream = print_or_file
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printer


def quiet_ray_data() -> None:
    """Ray Data's per-operator progress bars: the chain counts below say the same in one line."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def ray_logs_link(logs: Path) -> None:
    """`run.dir/logs/ray` points at this node's Ray session logs, where every actor's output lands."""
    import ray

    try:
        target = ray._private.worker.global_worker.node.get_logs_dir_path()
    except AttributeError:  # joined through ray:// (Ray Client): the logs are on the head
        return
    link = logs / "ray"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


class ChainProgress:
    """Corpus pass progress: chains done of total, generations, judge calls and pairs per step. On a terminal
    the status line updates on every chain; in a log, a line at each quarter and at the end."""

    def __init__(self, console: Console, status: Any = None) -> None:
        self.console, self.status = console, status
        self.total = self.done = 0
        self.generations: Counter = Counter()
        self.judge_calls: Counter = Counter()
        self.pairs: Counter = Counter()
        self._printed = 0

    def start(self, total: int) -> None:
        self.total = total
        self._show(force=True)

    def chain(self, tables: dict[str, Any]) -> None:
        """One finished chain's rows (pyarrow tables or lists of dicts per table name)."""
        self.done += 1
        for table, counter in (("performances", self.generations), ("judgments", self.judge_calls),
                               ("preferences", self.pairs)):
            counter.update(_steps(tables.get(table)))
        self._show()

    def line(self) -> str:
        def per_step(c: Counter) -> str:
            inner = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            return f"{sum(c.values())}" + (f" ({inner})" if inner else "")

        return (f"corpus pass · chains {self.done}/{self.total} · generations {per_step(self.generations)} · "
                f"judge calls {per_step(self.judge_calls)} · pairs {per_step(self.pairs)}")

    def _show(self, force: bool = False) -> None:
        if self.status is not None and self.console.is_terminal:
            self.status.update(self.line())
            return
        quarter = (4 * self.done) // max(self.total, 1)
        if force or quarter > self._printed or self.done == self.total:
            self._printed = quarter
            self.console.print(self.line())


def _steps(table: Any) -> list[str]:
    if table is None:
        return []
    if hasattr(table, "column"):
        return [str(s) for s in table.column("step").to_pylist()] if "step" in table.column_names else \
            ["-"] * table.num_rows
    return [str(r.get("step", "-")) for r in table]


# ---- progress from Ray workers -------------------------------------------------------------------------------
BOARD = "rsi-progress"  # the named actor workers report to (the job's namespace)


class ProgressBoard:
    """Latest progress per kind ("dpo": step, of, loss), put by workers, read by the driver's console."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def put(self, kind: str, data: Any) -> None:
        self.items[kind] = data

    def get(self, kind: str) -> Any:
        return self.items.get(kind)


def start_board() -> Any:
    import ray

    return ray.remote(num_cpus=0)(ProgressBoard).options(name=BOARD, get_if_exists=True).remote()


def report(kind: str, data: Any) -> None:
    """From any worker of the run: best effort, nothing when no board runs (a library call outside `rsi run`)."""
    import ray

    try:
        board = ray.get_actor(BOARD)
    except ValueError:
        return
    board.put.remote(kind, data)


@contextmanager
def watch_dpo(console: Console, status: Any, board: Any, every: float = 1.0) -> Iterator[None]:
    """While the block runs, DPO's step k of n with its loss (reported by rsi.train.progress): on a terminal in
    the status line, in a log a line per quarter of the steps and the last."""
    import threading

    import ray

    ray.get(board.put.remote("dpo", None))
    stop = threading.Event()
    shown = {"data": None, "quarter": -1}

    def show(final: bool = False) -> None:
        data = ray.get(board.get.remote("dpo"))
        if not data or data == shown["data"]:
            return
        shown["data"] = data
        line = f"DPO step {data['step']}/{data['of']} · loss {data['loss']:.4f}"
        if status is not None and console.is_terminal:
            status.update(line)
            return
        quarter = (4 * data["step"]) // max(data["of"], 1)
        if final or quarter > shown["quarter"]:
            shown["quarter"] = quarter
            console.print(line)

    def poll() -> None:
        while not stop.wait(every):
            show()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show(final=True)


# ---- rsi run --help ------------------------------------------------------------------------------------------
HELP_SECTIONS = ("model", "backend", "run", "loop", "tasks", "judging", "train", "sandbox", "evals", "gate",
                 "cluster", "log", "tracker")


def field_comments(cls: type) -> dict[str, str]:
    """A dataclass's comment per field, read from its source (the comments are the docs): the trailing
    `# comment`, else the comment lines right above the field."""
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
    """Every key of the main sections with its default and its comment, plus how overrides and sweeps work."""
    from rsi.config import RsiConfig

    cfg = RsiConfig()
    lines = ["usage: rsi run [KEY=VALUE …] [GROUP=OPTION …] [-m KEY=V1,V2 …] [--cfg job]", "",
             "The self-improvement loop as a Hydra app. Groups: model=tiny|smollm2-135m|hf, backend=vllm|hf,",
             "tasks=[programming,python_output,open_ended]. `--cfg job` prints the composed config; `-m` sweeps",
             "(each job in run.dir/sweep-<time>/N, a summary row per job). Keys, defaults and what they do:", ""]
    top = field_comments(RsiConfig)
    for section in HELP_SECTIONS:
        value = getattr(cfg, section, None)
        if section in top:
            lines.append(f"{section}: {top[section]}")
        if is_dataclass(value):
            comments = field_comments(type(value))
            for f in fields(value):
                default = getattr(value, f.name)
                text = f"  {section}.{f.name}={_show_default(default)}"
                lines.append(f"{text:<44} {comments.get(f.name, '')}".rstrip())
        elif section == "tasks":
            lines.append("tasks.<family>.{seeds,candidates,max_tokens,temperature,…}  each family's sizes "
                         "(rsi/conf/tasks/*.yaml)")
        else:
            lines.append(f"  {section}={_show_default(value)}")
    return "\n".join(lines)


def _show_default(value: Any) -> str:
    from rsi.choice import Choice

    if isinstance(value, Choice):
        return f"{value} ({'|'.join(m.value for m in type(value))})"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
