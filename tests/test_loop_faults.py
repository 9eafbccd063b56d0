"""`rsi run` when the DPO worker dies mid-training: Ray Train's FailureConfig (train.max_failures) restarts it from
the newest step checkpoint (train.save_steps), and the loop then hot-swaps the finished checkpoint into the live
engine as after any training: the next iteration is served by the new version, from the same engine process.
(tests/test_train_resume.py checks the resume itself, steps and curve, on `train_dpo` alone.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsi.corpus.stream import read_table
from rsi.train.resume import FAIL_ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_dpo_worker_killed_mid_training_then_swapped_as_usual(tiny_model: Path, tmp_path: Path) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "killed-once"
    overrides = [
        "model=tiny", f"model.path={tiny_model}", "backend=hf", "backend.num_cpus=0", "cluster.num_cpus=4",
        f"run.dir={run_dir}", "run.seed=3", "loop.iterations=2",
        "tasks=[open_ended]", "tasks.open_ended.seeds=[queues,dates,logs]", "tasks.open_ended.candidates=2",
        "tasks.open_ended.max_tokens=24", "judging.max_tokens=40", "judging.rationale_chars=16",
        "evals.enabled=false", "gate.enabled=false",
        # killed after step 3; the newest checkpoint is step 2
        "train.max_steps=4", "train.save_steps=2", "train.max_failures=1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", FAIL_ENV: f"3:{marker}"}
    done = subprocess.run([sys.executable, "-m", "rsi.cli", "run", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert marker.exists(), "the worker was never killed"

    first, second = json.loads((run_dir / "summary.json").read_text())
    assert [step for step, _ in first["dpo_curve"]] == [1, 2, 3, 4]  # steps 1-2 from the restored checkpoint
    assert (Path(first["checkpoint"]) / "model.safetensors").is_file()
    assert (first["new_version"], first["kept_version"], first["kept_checkpoint"]) == (1, 1, first["checkpoint"])
    assert "swap" in first["seconds"]
    # the swap: iteration 1 is served by v1, by the engine process that served v0
    assert second["model_version"] == 1 and second["engine_pid"] == first["engine_pid"]
    versions = read_table(run_dir / "corpus" / "iter_001", "performances", ["model_version"])
    assert set(versions.column("model_version").to_pylist()) == {1}
    assert second["trained_from"] == first["checkpoint"]
