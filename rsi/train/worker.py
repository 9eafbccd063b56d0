"""The per-worker training loop that Ray Train runs: TRL DPO on this worker's share, rank 0 saves.

Runs inside a Ray Train worker whose torch.distributed group Ray has already set up (gloo on CPU, nccl on
GPU); the HF Trainer and accelerate pick that group up from the RANK/WORLD_SIZE environment Ray exports.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

from rsi.train.config import TrainConfig

# TRL metrics that summarise DPO progress; the last logged value of each is returned to the caller.
METRIC_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected", "loss", "grad_norm", "learning_rate")


def dpo_config_kwargs(cfg: TrainConfig, output_dir: str, logging_dir: str | None = None) -> dict[str, Any]:
    """DPOConfig arguments for a TrainConfig; with `logging_dir`, TRL writes its curves there for TensorBoard."""
    from rsi.train.zero import deepspeed_config

    use_gpu = cfg.use_gpu
    return {
        "output_dir": output_dir,
        "learning_rate": cfg.learning_rate,
        "beta": cfg.beta,
        "loss_type": [str(cfg.loss_type)],  # a plain str: TRL checks and serialises it
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "deepspeed": deepspeed_config(str(cfg.deepspeed)),
        "use_cpu": not use_gpu,
        # TRL defaults to bf16; on CPU it is 3× slower on AVX2 and its autocast diverges from what the engines
        # serve, so it is GPU-only here.
        "bf16": use_gpu,
        "gradient_checkpointing": cfg.gradient_checkpointing and (use_gpu or cfg.deepspeed == "none"),
        "report_to": ["tensorboard"] if logging_dir else [],
        "save_strategy": "no",  # the final model is saved once, below; no optimizer-state checkpoints
        "logging_steps": 1,
        "disable_tqdm": True,  # Ray captures worker stdout; the printed log dicts are the progress lines
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,
    }


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: train, save the policy on rank 0 as a Ray checkpoint, report loss and metrics."""
    import ray.train
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from rsi.train.data import table_to_dataset
    from rsi.train.save import check_saved, save_policy
    from rsi.train.weighted import WeightedDPOTrainer

    cfg: TrainConfig = config["train"]
    rank = ray.train.get_context().get_world_rank()
    if not cfg.use_gpu:
        # Ray pins OMP threads to the worker's CPU request (1); the trainer runs while the engines wait.
        local = ray.train.get_context().get_local_world_size()
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // local))
    dataset = table_to_dataset(config["table"])

    tokenizer = AutoTokenizer.from_pretrained(config["base_model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(config["base_model"], dtype=torch.float32)

    with tempfile.TemporaryDirectory(prefix="rsi-dpo-") as work:
        logging_dir = config.get("logging_dir") if rank == 0 else None
        if logging_dir:  # transformers' TensorBoard callback reads its folder from the environment
            os.environ["TENSORBOARD_LOGGING_DIR"] = logging_dir
        args = DPOConfig(**dpo_config_kwargs(cfg, os.path.join(work, "trainer"), logging_dir))
        trainer = WeightedDPOTrainer(model=model, args=args, train_dataset=dataset,
                                     processing_class=tokenizer)
        started = time.monotonic()
        output = trainer.train()
        train_seconds = time.monotonic() - started

        save_dir = os.path.join(work, "model")
        save_policy(trainer, save_dir)  # every rank: a collective under ZeRO-3
        metrics = _summary(trainer.state.log_history, output.training_loss, trainer.state.global_step,
                           train_seconds)
        checkpoint = None
        if rank == 0:
            check_saved(save_dir)
            checkpoint = ray.train.Checkpoint.from_directory(save_dir)
        # All ranks report once (it is a barrier); rank 0's metrics are the run's, with the model attached.
        ray.train.report(metrics, checkpoint=checkpoint)
    return metrics


def _summary(history: list[dict[str, Any]], training_loss: float | None, steps: int,
             seconds: float) -> dict[str, Any]:
    """Loss (mean over the run) and its curve, the last logged value of each TRL metric, and step timing."""
    last: dict[str, float] = {}
    for entry in history:
        for key in METRIC_KEYS:
            if key in entry:
                last[key] = float(entry[key])
    loss = float(training_loss) if training_loss is not None and math.isfinite(training_loss) else None
    return {
        "train_loss": loss,
        "steps": int(steps),
        "train_seconds": seconds,
        "seconds_per_step": seconds / steps if steps else None,
        "curve": [[int(e["step"]), float(e["loss"])] for e in history if "loss" in e and "step" in e],
        **{("last_loss" if k == "loss" else k): v for k, v in last.items()},
    }

