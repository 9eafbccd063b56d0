"""Settings and outcome of one DPO training run (mirrors conf/train/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEEPSPEED_MODES = ("none", "zero2", "zero3")
# TRL 1.16 DPOTrainer loss types; checked here so a typo fails before Ray Train starts workers.
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class TrainConfig:
    deepspeed: str = "none"  # "none" | "zero2" | "zero3"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    # torch threads per CPU worker; 0: the node's cores shared among the workers. The engines are idle while
    # DPO runs, so the default takes every core (measured on SmolLM2, 2 cores: 54 → 28 s/step).
    threads: int = 0
    # Recompute activations in the backward pass: on SmolLM2 at max_length 1024 the CPU trainer's peak RSS
    # fell from 13.7 to 8.4 GB for 23% more time per step. Off under DeepSpeed on CPU, where it fails.
    gradient_checkpointing: bool = True
    learning_rate: float = 5e-6
    beta: float = 0.1
    epochs: int = 1
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    seed: int = 0
    loss_type: str = "sigmoid"

    def validate(self) -> None:
        """Fail on the driver, before any Ray worker starts, on settings that can never train."""
        if self.deepspeed not in DEEPSPEED_MODES:
            raise ValueError(f"train.deepspeed={self.deepspeed!r}: expected one of {DEEPSPEED_MODES}")
        positive = {"num_workers": self.num_workers, "cpus_per_worker": self.cpus_per_worker,
                    "epochs": self.epochs, "per_device_batch_size": self.per_device_batch_size,
                    "gradient_accumulation_steps": self.gradient_accumulation_steps,
                    "max_length": self.max_length}
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1] + ([f"threads={self.threads}"]
                                                                    if self.threads < 0 else [])
        if bad:
            raise ValueError(f"train settings must be >= 1 (threads >= 0): {', '.join(bad)}")
        if self.learning_rate <= 0 or self.beta <= 0:
            raise ValueError(f"train.learning_rate and train.beta must be > 0 (got {self.learning_rate}, "
                             f"{self.beta})")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"train.loss_type={self.loss_type!r}: expected one of {LOSS_TYPES}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"train.max_steps={self.max_steps}: use -1 (epochs decide) or a positive count")


@dataclass
class TrainResult:
    checkpoint: str  # HF folder: safetensors weights, config, tokenizer; loadable by from_pretrained and vLLM
    steps: int  # optimizer steps taken
    loss: float | None  # mean training DPO loss over all steps (HF Trainer's `training_loss`)
    metrics: dict = field(default_factory=dict)  # last logged value of each TRL metric, plus run totals
    seconds: float = 0.0  # wall time of the Ray Train run, worker start and save included
