"""DeepSpeed ZeRO configs built in code; "auto" values are filled in by the HF Trainer from DPOConfig."""

from __future__ import annotations

from typing import Any


def deepspeed_config(mode: str) -> dict[str, Any] | None:
    """The DeepSpeed config for `mode` ("none" → None, "zero2", "zero3").

    No "optimizer"/"scheduler" sections: the Trainer then builds its own AdamW and LR schedule and hands them
    to DeepSpeed, which avoids DeepSpeed's fused Adam ops (CUDA, or a JIT-compiled CPU op).
    """
    if mode == "none":
        return None
    stage = {"zero2": 2, "zero3": 3}[mode]  # the choice was checked with the config (TrainConfig.deepspeed)
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,  # gloo on CPU gains nothing from overlap; keeps memory flat on GPU too
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            # Save gathers full weights on rank 0 so the output folder is a plain HF model, not ZeRO shards.
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "steps_per_print": 10**9,  # the Trainer logs progress; DeepSpeed's own step lines are noise
        "wall_clock_breakdown": False,
    }
