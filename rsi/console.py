"""Third-party log noise of a run (vLLM, Ray, transformers, torch) kept in `run.dir/logs/` unless
`log.verbose=true`, so the console shows rsi's own progress and tables."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rsi.run_dir import RunDir

# Loggers of the libraries rsi drives; their INFO/WARNING lines go to run.dir/logs/driver.log unless verbose.
THIRD_PARTY = ("vllm", "ray", "transformers", "torch", "triton", "datasets", "deepspeed", "trl", "accelerate",
               "filelock", "urllib3", "httpx", "huggingface_hub", "tensorboard", "absl")


@contextmanager
def third_party_logs(run_dir: Path, verbose: bool) -> Iterator[Path]:
    """Within the block, the driver's third-party loggers write to `run_dir/logs/driver.log` instead of the
    console, and whatever reaches file descriptor 2 (torch's and vLLM's own handlers, C++ logs of Ray and vLLM)
    goes to `run_dir/logs/stderr.log`; both are restored afterwards, so an error raised out of the block is
    printed as usual. The actors' own output stays in Ray's session logs (`ray_logs_link`)."""
    logs = RunDir(run_dir).logs
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
