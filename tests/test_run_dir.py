"""The run folder: what a user already has is never lost. A folder holding a run is refused unless the run
resumes it or moves it aside, one run holds a folder at a time (a killed run's lock is taken over), and a
resume whose config changes the corpus is refused, naming the keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsi.run_dir import RunDir, RunDirError, changed_keys, claim

pytestmark = pytest.mark.unit

CONFIG = {"run": {"seed": 0, "resume": False}, "loop": {"iterations": 1}, "train": {"beta": 0.1}}


def _finished_run(root: Path) -> None:
    with claim(root, CONFIG, resume=False, overwrite=False) as run:
        run.save_config(CONFIG)
        run.summary.write_text("[]")
        run.record(0).parent.mkdir()
        run.record(0).write_text("{}")


def test_a_folder_holding_a_run_is_refused_and_kept_whole(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _finished_run(root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(RunDirError, match=r"already holds a run .*run\.resume=true.*run\.overwrite=true"):
        with claim(root, CONFIG, resume=False, overwrite=False):
            pytest.fail("a second fresh run must not start")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    with pytest.raises(RunDirError, match="contradict"):
        with claim(root, CONFIG, resume=True, overwrite=True):
            pass


def test_a_folder_left_by_a_run_that_stopped_at_its_checks_is_taken(tmp_path: Path) -> None:
    """A bad model path stops a run after it took the folder: its logs and lock are all it left, and the same
    command, fixed, runs there."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "driver.log").write_text("vllm: …")
    (tmp_path / ".lock").write_text("pid 1 on host")
    with claim(tmp_path, CONFIG, resume=False, overwrite=False) as run:
        assert (run.logs / "driver.log").is_file()


def test_a_folder_of_the_users_files_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="notes.txt"):
        with claim(tmp_path, CONFIG, resume=False, overwrite=False):
            pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_moves_the_old_run_aside_and_deletes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _finished_run(root)
    with claim(root, {**CONFIG, "run": {"seed": 5}}, resume=False, overwrite=True) as run:
        assert not run.summary.exists() and not run.config.exists()
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert (aside / "summary.json").read_text() == "[]" and (aside / "iterations" / "iter_000.json").is_file()
    assert "seed: 0" in (aside / ".hydra" / "config.yaml").read_text()
    _finished_run_over(root)  # the folder was empty: nothing to move
    _finished_run_over(root)  # within the same second again: each old run gets a folder of its own
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]) == 2


def _finished_run_over(root: Path) -> None:
    with claim(root, CONFIG, resume=False, overwrite=True) as run:
        run.summary.write_text("[]")


def test_resume_with_a_config_that_changes_the_corpus_is_refused_naming_the_keys(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _finished_run(root)
    changed = {**CONFIG, "run": {"seed": 3, "resume": True}, "train": {"beta": 0.3}}
    with pytest.raises(RunDirError, match=r"run\.seed \(0 -> 3\), train\.beta \(0\.1 -> 0\.3\)"):
        with claim(root, changed, resume=True, overwrite=False):
            pass
    assert "seed: 0" in RunDir(root).config.read_text()  # the saved config stays the run's own
    # more iterations, another log level: how the run goes on, not what its corpus holds
    more = {**CONFIG, "run": {"seed": 0, "resume": True}, "loop": {"iterations": 3}}
    with claim(root, more, resume=True, overwrite=False) as run:
        assert run.summary.read_text() == "[]"


def test_a_key_an_older_run_lacks_counts_as_its_default() -> None:
    saved = {"train": {"beta": 0.1}}
    assert changed_keys(saved, {"train": {"beta": 0.1, "label_noise": 0.0}}, {"train": {"label_noise": 0.0}}) == []
    assert changed_keys(saved, {"train": {"beta": 0.1, "label_noise": 0.5}},
                        {"train": {"label_noise": 0.0}}) == ["train.label_noise"]


def test_a_truncated_saved_config_is_refused_with_its_path(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _finished_run(root)
    RunDir(root).config.write_text("run: {seed: [0")
    with pytest.raises(RunDirError, match=r"config\.yaml is not readable YAML"):
        with claim(root, CONFIG, resume=True, overwrite=False):
            pass


HOLD = """
import sys, time
from pathlib import Path
from rsi.run_dir import claim
with claim(Path(sys.argv[1]), {}, resume=False, overwrite=False):
    print("held", flush=True)
    time.sleep(60)
"""


def test_one_run_per_folder_and_a_killed_runs_lock_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by a run \(pid {holder.pid} on "):
            with claim(root, {}, resume=True, overwrite=False):
                pass
    finally:
        holder.kill()  # as kill -9 would: the lock file stays, its lock goes with the process
        holder.wait()
    assert (root / ".lock").is_file()
    deadline = time.monotonic() + 10
    while True:
        try:
            with claim(root, {}, resume=True, overwrite=False) as run:
                assert f"pid {os.getpid()}" in (run.root / ".lock").read_text()
            break
        except RunDirError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        with claim(tmp_path / "run", CONFIG, resume=False, overwrite=False):
            pass
