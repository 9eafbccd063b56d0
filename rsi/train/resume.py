"""Mid-run checkpoints through Ray Train: each HF Trainer checkpoint is reported to Ray, a restarted worker
resumes from the newest one (optimizer, LR schedule, RNG and data position included), not from step 0.

transformers is imported inside the functions: `rsi.train` (and so the driver) imports this module for FAIL_ENV.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

# Test hook: "STEP:MARKER" makes the worker die once, right after optimizer step STEP, when MARKER does not
# exist yet (it is created first, so the restarted worker runs through). Propagated to workers by train_dpo.
FAIL_ENV = "RSI_DPO_FAIL_AFTER_STEP"


def add_callbacks(trainer: Any, save_steps: int) -> None:
    """Report each Trainer checkpoint to Ray Train (with save_steps), and the FAIL_ENV fault when it is set."""
    from transformers import TrainerCallback

    class RayCheckpointReporter(TrainerCallback):
        """After the Trainer writes `checkpoint-<step>`, report rank 0's copy to Ray Train (every rank reports:
        `ray.train.report` is a barrier)."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            import ray.train

            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            checkpoint = ray.train.Checkpoint.from_directory(folder) if state.is_world_process_zero else None
            ray.train.report({"step": state.global_step}, checkpoint=checkpoint)

    class FaultInjection(TrainerCallback):
        """Kill this worker process once after a given step, as a crashed node would."""

        def __init__(self, step: int, marker: str) -> None:
            self.step, self.marker = step, marker

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == self.step and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                time.sleep(5)  # let Ray's controller register the checkpoint reported before this step
                os._exit(1)

    if save_steps:
        trainer.add_callback(RayCheckpointReporter())
    spec = os.environ.get(FAIL_ENV, "")
    if spec:
        step, marker = spec.split(":", 1)
        trainer.add_callback(FaultInjection(int(step), marker))


def restore_checkpoint(folder: str) -> tuple[str | None, int]:
    """Copy Ray Train's latest checkpoint of this run to `folder`; (its path, its step), or (None, 0) at a first
    start. Only an HF Trainer checkpoint counts: the final model folder carries no trainer state."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None, 0
    checkpoint.to_directory(folder)
    state_file = os.path.join(folder, "trainer_state.json")
    if not os.path.exists(state_file):
        return None, 0
    with open(state_file) as f:
        return folder, int(json.load(f)["global_step"])
