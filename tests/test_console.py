"""What a user sees of `rsi run`: progress counts per corpus pass, third-party log lines kept in run.dir/logs/
unless log.verbose, and `rsi run --help` explaining the keys with the config's own comments."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from rsi.cli import field_comments, run_help
from rsi.config import RunConfig
from rsi.console import third_party_logs
from rsi.progress import ChainProgress


@pytest.mark.unit
def test_help_explains_the_main_keys() -> None:
    text = run_help()
    assert "run.dir=runs/default" in text and "corpus, checkpoints and summaries land here" in text
    assert "cluster.runtime_env=inherit (inherit|python|pip|image)" in text
    assert "log.verbose=false" in text and "sandbox.resource=null" in text
    assert field_comments(RunConfig)["commit_chains"].startswith("finished chains per committed corpus part")
    out = subprocess.run([sys.executable, "-m", "rsi.cli", "run", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == text.strip()
    assert "Powered by Hydra" not in out.stdout


@pytest.mark.unit
def test_help_prints_each_key_with_the_comment_of_the_class_that_defines_it() -> None:
    """The help is built from the dataclasses themselves, so it cannot say what a copy of a class once said:
    every field of every section (nested ones too, sandbox.limits.*) is listed with its own class's comment."""
    from dataclasses import fields, is_dataclass

    from rsi.config import RsiConfig

    text = run_help()
    lines = text.splitlines()

    def check(prefix: str, value: object) -> int:
        comments, seen = field_comments(type(value)), 0
        for f in fields(value):  # type: ignore[arg-type]
            default = getattr(value, f.name)
            if is_dataclass(default):
                seen += check(f"{prefix}.{f.name}", default)
                continue
            [line] = [x for x in lines if x.strip().startswith(f"{prefix}.{f.name}=")]
            assert line.rstrip().endswith(comments.get(f.name, "")), (line, comments.get(f.name))
            seen += 1
        return seen

    cfg = RsiConfig()
    counted = sum(check(f.name, getattr(cfg, f.name)) for f in fields(RsiConfig) if is_dataclass(getattr(cfg, f.name)))
    assert counted > 60
    assert "sandbox.limits.memory_mb=1024" in text and "sandbox.jobs_per_sandbox=2000" in text
    assert "tasks=[programming,python_output,open_ended,code_review]" in text


@pytest.mark.unit
def test_third_party_logs_go_to_the_run_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Not verbose: a vLLM or Ray record reaches run.dir/logs/driver.log and no console handler, even from a
    child logger the library gave a handler of its own; verbose (and after the block): it propagates to the
    console's handlers as before."""
    for name in ("vllm", "ray"):  # importing vLLM or starting Ray elsewhere in the session configures these
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [])
        monkeypatch.setattr(logger, "propagate", True)
    library_child = logging.getLogger("ray.data")  # as Ray Data configures it: a console handler of its own
    monkeypatch.setattr(library_child, "handlers", [logging.StreamHandler()])
    monkeypatch.setattr(library_child, "propagate", False)
    with third_party_logs(tmp_path, verbose=False) as logs:
        logging.getLogger("vllm.engine").warning("kv cache of 1 GiB")
        logging.getLogger("ray.data").info("execution plan")
    assert caplog.records == []
    text = (logs / "driver.log").read_text()
    assert "WARNING vllm.engine: kv cache of 1 GiB" in text and "INFO ray.data: execution plan" in text
    with third_party_logs(tmp_path, verbose=True):
        logging.getLogger("vllm.engine").warning("on the console")
    logging.getLogger("ray").warning("after the run")
    assert [r.getMessage() for r in caplog.records] == ["on the console", "after the run"]
    assert "on the console" not in (logs / "driver.log").read_text()


@pytest.mark.unit
def test_raylet_warnings_go_to_the_run_dir_and_errors_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the raylet publishes reaches the driver through Ray's own printer, not a logger: its WARNING lines
    go to driver.log when not verbose; an error (a worker killed for memory) still goes to Ray's printer, and
    after the block every line does again. (Ray's printer is replaced by a recorder here: it deduplicates lines
    across a session, which would make what this test sees depend on earlier tests.)"""
    import ray._private.worker as ray_worker

    printed: list[str] = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, ignore_prefix: printed.extend(data["lines"]))

    def published(line: str) -> None:  # as ray._private.worker.listen_error_messages hands it on
        ray_worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False)

    warning = "WARNING: 18 PYTHON worker processes have been started on node: abc"
    with third_party_logs(tmp_path, verbose=False) as logs:
        published(warning)
        published("Task was killed due to the node running low on memory.")
    published("WARNING: after the run")
    # (a Ray session of an earlier test may publish lines of its own meanwhile: only this test's are checked)
    assert warning not in printed
    assert "Task was killed due to the node running low on memory." in printed and "WARNING: after the run" in printed
    assert f"raylet: {warning}" in (logs / "driver.log").read_text()

@pytest.mark.unit
def test_stderr_of_libraries_goes_to_the_run_dir(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """What a library writes straight to file descriptor 2 (torch's glog lines, C++ logs) lands in
    run.dir/logs/stderr.log; after the block, stderr is the console again."""
    import os

    with third_party_logs(tmp_path, verbose=False) as logs:
        os.write(2, b"I1201 inductor config\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert (logs / "stderr.log").read_text() == "I1201 inductor config\n"


@pytest.mark.unit
def test_chain_progress_counts_per_step() -> None:
    buf = io.StringIO()
    progress = ChainProgress(Console(file=buf, width=200, force_terminal=False))
    progress.start(4)
    for _ in range(4):
        progress.chain({"performances": [{"step": "respond"}] * 3,
                        "judgments": [{"step": "rank_responses"}] * 2 + [{"step": "rank_response_rankings"}],
                        "preferences": [{"step": "respond"}]})
    lines = buf.getvalue().splitlines()
    assert lines[-1] == ("corpus pass · chains 4/4 · generations 12 (respond 12) · judge calls 12 "
                         "(rank_response_rankings 4, rank_responses 8) · pairs 4 (respond 4)")
    assert len(lines) == 5  # the start, then a line per quarter in a log


@pytest.mark.ray
def test_dpo_steps_reach_the_console(ray_local) -> None:
    """Rank 0's TRL callback reports each logged step to the run's board actor; the driver's watcher prints
    "DPO step k/n · loss" in a log (a line per quarter, and the last)."""
    import time

    from transformers import TrainerState

    from rsi.progress import start_board, watch_dpo
    from rsi.train.progress import ProgressCallback

    board = start_board()
    buf = io.StringIO()
    state = TrainerState(global_step=0, max_steps=4)
    with watch_dpo(Console(file=buf, width=200, force_terminal=False), None, board, every=0.05):
        for step in range(1, 5):
            state.global_step = step
            ProgressCallback().on_log(None, state, None, logs={"loss": 0.7 - 0.1 * step})
            time.sleep(0.3)
    lines = buf.getvalue().splitlines()
    assert lines[-1] == "DPO step 4/4 · loss 0.3000"
    assert all(re.fullmatch(r"DPO step [1-4]/4 · loss 0\.\d{4}", line) for line in lines)
