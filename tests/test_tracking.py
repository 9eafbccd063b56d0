"""Trackers: TensorBoard event files and an MLflow local store hold the loop's scalars by step."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.tracking import Tracker

pytestmark = pytest.mark.unit


def test_tensorboard_tracker_writes_events(tmp_path: Path) -> None:
    tracker = Tracker("tensorboard", tmp_path)
    tracker.log({"eval_candidate/humaneval": 0.25, "dpo/loss": None}, step=0)
    tracker.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "loop"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("eval_candidate/humaneval")] == [pytest.approx(0.25)]
    assert tracker.dpo_logging_dir == tmp_path / "tb"


def test_mlflow_tracker_writes_a_local_store(tmp_path: Path) -> None:
    import mlflow

    tracker = Tracker("mlflow", tmp_path)
    tracker.log({"eval_candidate/humaneval": 0.25, "pass@1": 1.0}, step=0)
    tracker.log({"eval_candidate/humaneval": 0.5}, step=1)
    tracker.close()
    assert tracker.dpo_logging_dir is None
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("rsi").experiment_id])
    history = client.get_metric_history(run.info.run_id, "eval_candidate/humaneval")
    assert [(m.step, m.value) for m in history] == [(0, 0.25), (1, 0.5)]
    assert run.data.metrics["pass_at_1"] == 1.0
