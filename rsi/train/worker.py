"""The per-worker training loop that Ray Train runs: TRL DPO on this worker's share, rank 0 saves.

Runs inside a Ray Train worker whose torch.distributed group Ray has already set up (gloo on CPU, nccl on
GPU); the HF Trainer and accelerate pick that group up from the RANK/WORLD_SIZE environment Ray exports.
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
import time
from typing import Any

from rsi.train.config import Checkpointing, TrainConfig
from rsi.train.speed import MAX_LENGTH_CAP

# TRL metrics that summarise DPO progress; the last logged value of each is returned to the caller.
METRIC_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected", "loss", "grad_norm", "learning_rate")


def precomputes_ref(cfg: TrainConfig) -> bool:
    """Reference log-probs in one pass before training; under DeepSpeed TRL would build an inference engine on
    CPU for it, an untested path, so there the reference model stays and runs every step."""
    return cfg.precompute_ref and cfg.deepspeed == "none"


def dpo_config_kwargs(cfg: TrainConfig, output_dir: str, logging_dir: str | None = None) -> dict[str, Any]:
    """DPOConfig arguments for a TrainConfig; with `logging_dir`, TRL writes its curves there for TensorBoard.

    Gradient checkpointing under `auto` starts off here; `build_trainer` decides it once the corpus is tokenized.
    """
    from rsi.train.zero import deepspeed_config

    use_gpu = cfg.use_gpu
    return {
        "output_dir": output_dir,
        "learning_rate": cfg.learning_rate,
        "beta": cfg.beta,
        # plain strs: TRL checks and serialises them
        "loss_type": [str(cfg.loss_type)] + (["sft"] if cfg.sft_weight else []),
        "loss_weights": [1.0, cfg.sft_weight] if cfg.sft_weight else None,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        # Batches pad to their longest row, so truncating at the corpus' longest (capped) is the cap itself.
        "max_length": cfg.max_length or MAX_LENGTH_CAP,
        "precompute_ref_log_probs": precomputes_ref(cfg),
        "seed": cfg.seed,
        "deepspeed": deepspeed_config(str(cfg.deepspeed)),
        "use_cpu": not use_gpu,
        # TRL defaults to bf16; on CPU it is 3× slower on AVX2 and its autocast diverges from what the engines
        # serve, so it is GPU-only here.
        "bf16": use_gpu,
        "gradient_checkpointing": cfg.gradient_checkpointing == Checkpointing.always and _can_checkpoint(cfg),
        "report_to": ["tensorboard"] if logging_dir else [],
        # Mid-run checkpoints (optimizer, scheduler, RNG, step) for a restarted worker to resume from; only the
        # newest is kept here, Ray Train holds the copy that counts.
        "save_strategy": "steps" if cfg.save_steps else "no",
        **({"save_steps": cfg.save_steps, "save_total_limit": 1} if cfg.save_steps else {}),
        "logging_steps": 1,
        "disable_tqdm": True,  # Ray captures worker stdout; the printed log dicts are the progress lines
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,
    }


def _can_checkpoint(cfg: TrainConfig) -> bool:
    return cfg.use_gpu or cfg.deepspeed == "none"  # DeepSpeed on CPU fails with activation checkpointing


def build_trainer(cfg: TrainConfig, model: Any, tokenizer: Any, dataset: Any, output_dir: str,
                  logging_dir: str | None = None, local_workers: int = 1) -> tuple[Any, dict[str, Any]]:
    """The WeightedDPOTrainer for `cfg` with the step's speed settings applied; also what was decided and why."""
    from trl import DPOConfig

    from rsi.train.progress import ProgressCallback
    from rsi.train.speed import available_bytes, longest_pair, needs_checkpointing
    from rsi.train.weighted import WeightedDPOTrainer

    args = DPOConfig(**dpo_config_kwargs(cfg, output_dir, logging_dir))
    trainer = WeightedDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 unpad=cfg.padding_free, share_prompt=cfg.share_prompt)
    trainer.add_callback(ProgressCallback())  # the console's "DPO step k/n · loss"
    length = longest_pair(trainer.train_dataset, args.max_length)
    rows = 2 * cfg.per_device_batch_size  # chosen and rejected rows of each pair
    # The estimate counts 16 bytes a parameter (weight, gradient, AdamW's two moments); a frozen base weight
    # (LoRA) holds only its 4, so it counts as a quarter of one.
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_params = trainable + (sum(p.numel() for p in model.parameters()) - trainable) // 4
    budget = available_bytes(cfg.use_gpu, local_workers)
    if cfg.gradient_checkpointing == Checkpointing.auto and _can_checkpoint(cfg):
        # Read by Trainer.train(), which is when checkpointing is switched on.
        trainer.args.gradient_checkpointing = needs_checkpointing(
            model.config, n_params, rows, length, reference_model=trainer.ref_model is not None, budget=budget)
    info = {"max_length": length, "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
            "precompute_ref": bool(args.precompute_ref_log_probs), "padding_free": cfg.padding_free,
            "share_prompt": cfg.padding_free and cfg.share_prompt,
            "memory_budget_gb": budget / 2**30}
    return trainer, info


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: train (resuming from Ray's latest checkpoint after a restart), save the policy on rank 0
    as a Ray checkpoint, report loss and metrics."""
    import ray.train
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsi.train.data import draw_pairs, table_to_dataset
    from rsi.train.lora import base_of, policy_model, write_meta
    from rsi.train.resume import add_callbacks, restore_checkpoint
    from rsi.train.save import check_saved, save_policy
    from rsi.train.speed import cpu_threads

    cfg: TrainConfig = config["train"]
    context = ray.train.get_context()
    rank, local = context.get_world_rank(), context.get_local_world_size()
    if not cfg.use_gpu:
        # Ray pins OMP threads to the worker's CPU request (1); the trainer runs while the engines wait.
        torch.set_num_threads(cpu_threads(cfg.threads, local))
    if context.get_world_size() == 1 and cfg.deepspeed == "none":
        # Alone, there is nothing to synchronise; with Ray's LOCAL_RANK set, accelerate would still wrap the model
        # in a one-process DDP whose gradient bucketing cost a third of a fast CPU step (measured on SmolLM2).
        for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            os.environ.pop(key, None)
    dataset = table_to_dataset(config["table"])
    if cfg.max_steps > 0:  # every rank draws the same sample: accelerate shards it across them
        draws = cfg.max_steps * cfg.per_device_batch_size * cfg.gradient_accumulation_steps * context.get_world_size()
        dataset = draw_pairs(dataset, draws, cfg.seed)

    start = config["base_model"]  # a full model folder, or with train.lora the adapter to continue
    base = base_of(start)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.lora.enabled:
        # The reference is the policy trained from: the base with the adapter disabled for a fresh adapter, or a
        # frozen copy of the continued adapter (TRL's "ref" adapter, megabytes); never a second model.
        model, _ = policy_model(start, cfg.lora, torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)

    with tempfile.TemporaryDirectory(prefix="rsi-dpo-") as work:
        logging_dir = config.get("logging_dir") if rank == 0 else None
        if logging_dir:  # transformers' TensorBoard callback reads its folder from the environment
            os.environ["TENSORBOARD_LOGGING_DIR"] = logging_dir
        trainer, decided = build_trainer(cfg, model, tokenizer, dataset, os.path.join(work, "trainer"),
                                         logging_dir, local)
        # What the step ran with: the thread count, and the OpenMP count the process started with (train_dpo's)
        decided.update(threads=torch.get_num_threads(), omp_num_threads=os.environ.get("OMP_NUM_THREADS", ""))
        add_callbacks(trainer, cfg.save_steps)
        resume, resumed_from = restore_checkpoint(os.path.join(work, "resume"))
        started = time.monotonic()
        output = trainer.train(resume_from_checkpoint=resume)
        train_seconds = time.monotonic() - started

        save_dir = os.path.join(work, "model")
        save_policy(trainer, save_dir)  # every rank: a collective under ZeRO-3
        steps = trainer.state.global_step
        # After a resume the Trainer's loss is the mean of this attempt's steps only; the restored log has all.
        metrics = _summary(trainer.state.log_history, None if resume else output.training_loss, steps,
                           train_seconds, steps - resumed_from)
        metrics.update({"resumed_from_step": resumed_from, **{f"decided/{k}": v for k, v in decided.items()}})
        metrics["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        checkpoint = None
        if rank == 0:
            if cfg.lora.enabled:
                write_meta(save_dir, base, start if start != base else None)
            check_saved(save_dir)
            checkpoint = ray.train.Checkpoint.from_directory(save_dir)
        # All ranks report once (it is a barrier); rank 0's metrics are the run's, with the model attached.
        ray.train.report(metrics, checkpoint=checkpoint)
    return metrics


def _summary(history: list[dict[str, Any]], training_loss: float | None, steps: int,
             seconds: float, steps_timed: int | None = None) -> dict[str, Any]:
    """Loss (mean over the run) and its curve, the last logged value of each TRL metric, and step timing."""
    last: dict[str, float] = {}
    for entry in history:
        for key in METRIC_KEYS:
            if key in entry:
                last[key] = float(entry[key])
    curve = [[int(e["step"]), float(e["loss"])] for e in history if "loss" in e and "step" in e]
    if training_loss is None and curve:  # logging_steps=1: the curve holds every optimizer step's loss
        training_loss = sum(v for _, v in curve) / len(curve)
    loss = float(training_loss) if training_loss is not None and math.isfinite(training_loss) else None
    timed = steps if steps_timed is None else steps_timed
    return {
        "train_loss": loss,
        "steps": int(steps),
        "train_seconds": seconds,
        "seconds_per_step": seconds / timed if timed else None,
        "curve": curve,
        **{("last_loss" if k == "loss" else k): v for k, v in last.items()},
    }
