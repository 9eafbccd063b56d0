"""Mid-run checkpoints: a DPO worker killed after a step resumes from the last checkpoint Ray Train holds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rsi.train import TrainConfig, train_dpo
from rsi.train.resume import FAIL_ENV


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_resumes_from_last_checkpoint(tiny_model: Path, tmp_path: Path, ray_local,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from test_train import _pairs, _write

    prefs = _write(tmp_path / "prefs", _pairs(16))
    marker = tmp_path / "killed-once"
    # The worker process exits after step 5; the newest checkpoint is step 4 (save_steps=2).
    monkeypatch.setenv(FAIL_ENV, f"5:{marker}")
    cfg = TrainConfig(max_steps=8, save_steps=2, max_failures=1, learning_rate=1e-4, per_device_batch_size=2)
    result = train_dpo(str(prefs), str(tiny_model), str(tmp_path / "policy"), cfg, storage_path=str(tmp_path / "ray"))

    assert marker.exists(), "the fault was never injected"
    assert result.metrics["resumed_from_step"] == 4
    assert result.steps == 8
    assert [step for step, _ in result.curve] == list(range(1, 9))  # steps 1-4 from the checkpoint's log
    assert result.loss is not None and math.isfinite(result.loss)
    assert (Path(result.checkpoint) / "model.safetensors").exists()
    # The timing covers this attempt's steps only.
    assert result.metrics["seconds_per_step"] == pytest.approx(result.metrics["train_seconds"] / 4)


@pytest.mark.ray
@pytest.mark.slow
def test_without_retries_a_killed_worker_fails_the_run(tiny_model: Path, tmp_path: Path, ray_local,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.train
    from test_train import _pairs, _write

    prefs = _write(tmp_path / "prefs", _pairs(8))
    monkeypatch.setenv(FAIL_ENV, f"2:{tmp_path / 'killed-once'}")
    with pytest.raises((ray.train.TrainingFailedError, RuntimeError)):
        train_dpo(str(prefs), str(tiny_model), str(tmp_path / "policy"),
                  TrainConfig(max_steps=4, save_steps=1, max_failures=0, per_device_batch_size=2))


@pytest.mark.unit
def test_summary_after_resume_uses_the_whole_curve() -> None:
    """After a resume the Trainer's own mean loss covers this attempt only; the restored log covers the run."""
    from rsi.train.worker import _summary

    history = [{"step": s, "loss": float(s), "rewards/margins": 0.1 * s} for s in range(1, 9)]
    resumed = _summary(history, None, 8, 10.0, steps_timed=4)
    assert resumed["train_loss"] == pytest.approx(4.5) and resumed["seconds_per_step"] == pytest.approx(2.5)
    assert [s for s, _ in resumed["curve"]] == list(range(1, 9)) and resumed["rewards/margins"] == pytest.approx(0.8)
    fresh = _summary(history, 4.0, 8, 10.0)
    assert fresh["train_loss"] == 4.0 and fresh["seconds_per_step"] == pytest.approx(1.25)
