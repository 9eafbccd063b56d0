"""DPO progress for the console: rank 0 reports each logged step (k of n, loss) to the run's progress board."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class ProgressCallback(TrainerCallback):
    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        from rsi.progress import report

        report("dpo", {"step": int(state.global_step), "of": int(state.max_steps), "loss": float(logs["loss"])})
