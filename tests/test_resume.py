"""Crash and resume end to end: `rsi run` on the tiny model is killed with SIGKILL in the middle of its second
iteration, rerun with run.resume=true, and compared with the rows seen before the kill and with an
uninterrupted run of the same seed: nothing lost, nothing twice, the same counts and ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from rsi.corpus.stream import COMMITS, manifest_complete, read_table

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("performances", "judgments", "preferences")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _overrides(tiny_model: Path, run_dir: Path, resume: bool) -> list[str]:
    return [
        "model=tiny", f"model.path={tiny_model}", "backend=hf", "backend.num_cpus=0", "cluster.num_cpus=4",
        f"run.dir={run_dir}", "run.seed=7", f"run.resume={str(resume).lower()}", "loop.iterations=2",
        # open_ended: the cheapest family (no sandbox); six chains so the kill can land between commits
        "tasks=[open_ended]", "tasks.open_ended.seeds=[queues,dates,csv files,logs,graphs,matrices]",
        "tasks.open_ended.candidates=2", "tasks.open_ended.max_tokens=24",
        "judging.max_tokens=40", "judging.rationale_chars=16", "train.max_steps=1",
        # one chain at a time: commits spread over the iteration, so the kill lands between them
        "loop.chains_in_flight=1", "run.commit_chains=1",
        # every candidate is rejected: a resume that forgot the decision would serve v1, not v0, afterwards
        "evals.tasks=[format_following]", "evals.limit=2", "gate.metrics=[format_following]", "gate.min_gain=1.0",
    ]


def _start(tiny_model: Path, run_dir: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    # own session: the kill takes the driver and every Ray process it started
    return subprocess.Popen([sys.executable, "-m", "rsi.cli", "run", *_overrides(tiny_model, run_dir, resume)],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 900) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]


def _ids(run_dir: Path) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {t: [] for t in TABLES}
    for it_dir in sorted((run_dir / "corpus").glob("iter_*")):
        for t in TABLES:
            ids[t] += read_table(it_dir, t, ["id"]).column("id").to_pylist()
    return ids


def test_sigkill_mid_iteration_then_resume(tiny_model: Path, tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    proc = _start(tiny_model, crashed, resume=False)
    second = crashed / "corpus" / "iter_001"
    deadline = time.monotonic() + 900
    # wait until the second iteration has committed some sets but not all of them
    while time.monotonic() < deadline and proc.poll() is None:
        if list((second / COMMITS).glob("part-*.json")) and not manifest_complete(second):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-iteration"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    time.sleep(1.0)  # let the kernel reap the process group before the next run starts its own Ray
    assert not manifest_complete(second)
    before = _ids(crashed)
    assert before["performances"] and len(before["performances"]) < 2 * 6 * 2

    _finish(_start(tiny_model, crashed, resume=True))
    after = _ids(crashed)

    reference = tmp_path / "reference"
    _finish(_start(tiny_model, reference, resume=False))
    want = _ids(reference)

    for t in TABLES:
        dup = [i for i, n in Counter(after[t]).items() if n > 1]
        assert not dup, f"{t}: written twice: {dup[:3]}"
        assert set(before[t]) <= set(after[t]), f"{t}: rows committed before the kill were lost"
    for t in ("performances", "judgments"):
        assert len(after[t]) == len(want[t]), t
        assert sorted(after[t]) == sorted(want[t]), f"{t}: seeded sampling, yet different ids"
    # the resumed run kept iteration 0's decision (rejected): the pools served v0 again, so its second
    # iteration's rows say version 0, and its records match the uninterrupted run's
    versions = read_table(second, "performances", ["model_version"]).column("model_version").to_pylist()
    assert set(versions) == {0}
    records = [json.loads((d / "summary.json").read_text()) for d in (crashed, reference)]
    for summary in records:
        assert [(r["decision"], r["model_version"], r["new_version"]) for r in summary] == [
            ("rejected", 0, 1), ("rejected", 0, 2)]
