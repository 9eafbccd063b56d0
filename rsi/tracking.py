"""Experiment tracking: every iteration's metrics (evaluations with their CIs, gate decisions, corpus counts,
timings) and DPO's training curves go to a tracker a person browses while the run goes on.

`tracker=tensorboard` (default): event files under `run.dir/tb/` (`tensorboard --logdir run.dir/tb`); TRL
writes its own DPO curves there too. `tracker=mlflow`: a local file store under `run.dir/mlruns/` (needs the
`mlflow` package). `tracker=none`: nothing beyond summary.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rsi.choice import Choice
from rsi.run_dir import RunDir


class TrackerKind(Choice):
    tensorboard = "tensorboard"
    mlflow = "mlflow"
    none = "none"


class Tracker:
    """Scalars by name and step; a name is `group/metric` (rsi.loop.tracked_scalars: e.g. `eval_candidate/humaneval`,
    `corpus/preferences`, `seconds/dpo`)."""

    def __init__(self, kind: TrackerKind, run_dir: Path) -> None:
        self.kind, self.run_dir = TrackerKind(kind), Path(run_dir)
        self._writer: Any = None
        if self.kind == TrackerKind.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(RunDir(self.run_dir).tb / "loop"))
        elif self.kind == TrackerKind.mlflow:
            try:
                import mlflow
            except ImportError as e:
                raise RuntimeError("tracker=mlflow needs mlflow (pip install mlflow-skinny)") from e
            # A local file store needs no server; mlflow 3 keeps it behind this switch (in maintenance mode).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((self.run_dir / "mlruns").resolve().as_uri())
            mlflow.set_experiment("rsi")
            self._writer = mlflow.start_run(run_name=self.run_dir.name)

    @property
    def dpo_logging_dir(self) -> Path | None:
        """Where TRL writes its own TensorBoard curves, one folder per version (TensorBoard only)."""
        return RunDir(self.run_dir).tb if self.kind == TrackerKind.tensorboard else None

    def log(self, scalars: dict[str, float | None], step: int) -> None:
        values = {k: float(v) for k, v in scalars.items() if v is not None}
        if self.kind == TrackerKind.tensorboard:
            for name, value in values.items():
                self._writer.add_scalar(name, value, step)
            self._writer.flush()
        elif self.kind == TrackerKind.mlflow:
            import mlflow

            # mlflow keys may not hold "@"; the rest of our names are fine
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self.kind == TrackerKind.tensorboard:
            self._writer.close()
        elif self.kind == TrackerKind.mlflow:
            import mlflow

            mlflow.end_run()
