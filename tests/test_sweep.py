"""Sweeps: `rsi run -m` gives each job its own run dir under the sweep dir, tears its pools down before the next
job starts, and writes one summary row per job with the swept values and the final metrics."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import assert_iteration_written, tiny_run

from rsi.sweep import summary_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_summary_rows_show_the_swept_values() -> None:
    jobs = [{"job": n, "overrides": ["model=tiny", f"train.beta={b}", "+x.y=1"], "status": "ok",
             "run_dir": f"/r/{n}", "metrics": {"dpo_loss": loss}} for n, b, loss in ((0, 0.05, 0.69), (1, 0.3, 0.6))]
    rows = summary_rows(jobs)
    assert rows == [{"job": 0, "train.beta": "0.05", "status": "ok", "run_dir": "/r/0", "dpo_loss": 0.69},
                    {"job": 1, "train.beta": "0.3", "status": "ok", "run_dir": "/r/1", "dpo_loss": 0.6}]
    assert summary_rows(jobs[:1])[0]["model"] == "tiny"  # one job: every override is shown


@pytest.mark.e2e
@pytest.mark.slow
def test_two_job_sweep_on_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    """`rsi run -m train.beta=0.05,0.3`: two run dirs, each with its corpus, checkpoint and config; the engine
    takes 2 of the 3 CPUs of the shared Ray, so the second job could not start its pool had the first one's
    stayed; the summary has one row per job."""
    overrides = [o for o in tiny_run(tiny_model) if not o.startswith("backend.num_cpus")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-m", "rsi.cli", "run", "-m", *overrides, "backend.num_cpus=2",
                          "cluster.num_cpus=3", "train.beta=0.05,0.3", f"run.dir={tmp_path / 'runs'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    [sweep] = (tmp_path / "runs").glob("sweep-*")
    for job in ("0", "1"):
        assert_iteration_written(sweep / job)
        assert (sweep / job / ".hydra" / "config.yaml").is_file()
        assert (sweep / job / "summary.json").is_file()
    with open(sweep / "sweep_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["train.beta"], r["status"]) for r in rows] == [("0", "0.05", "ok"), ("1", "0.3", "ok")]
    assert all(r["run_dir"] == str(sweep / r["job"]) and r["dpo_loss"] and r["kept_version"] == "1" for r in rows)
    assert "candidate/format_following" in rows[0]
    assert len(json.loads((sweep / "sweep_summary.json").read_text())["rows"]) == 2
