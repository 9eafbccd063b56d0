"""Third-party log lines of a run kept in run.dir/logs/ unless log.verbose: the console shows rsi's own lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rsi.console import third_party_logs


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
