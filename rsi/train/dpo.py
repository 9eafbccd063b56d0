"""`train_dpo`: one DPO run over a preferences corpus, as a Ray Train job, ending in an HF model folder."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from rsi.train.config import TrainConfig, TrainResult
from rsi.train.data import add_label_noise, load_preferences, pair_keys, prepare_preferences
from rsi.train.resume import FAIL_ENV
from rsi.train.worker import train_loop

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

# Set on the driver, these must reach the workers too: offline hub use, caches, DeepSpeed's accelerator pick.
_PROPAGATED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME",
                   "HF_DATASETS_CACHE", "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", FAIL_ENV)
_PRINT_PATCH_ENV = "RAY_TRAIN_ENABLE_PRINT_PATCH"


def worker_env(cfg: TrainConfig) -> dict[str, str]:
    """The environment every DPO worker process starts with (Ray Train's `worker_runtime_env`)."""
    env = {k: os.environ[k] for k in _PROPAGATED_ENV if k in os.environ}
    # Train V2 patches `print` to log through its logger and tee redirected streams; that turns dill's
    # captured `dis` output (datasets fingerprinting TRL's map functions) into thousands of log lines.
    env.setdefault(_PRINT_PATCH_ENV, os.environ.get(_PRINT_PATCH_ENV, "0"))
    # Ray starts workers at nice 15: the trainer is the work itself, and would lose time to any other process.
    env["RAY_worker_niceness"] = "0"
    if not cfg.use_gpu:
        # Ray starts each worker with OMP_NUM_THREADS=1 (its CPU request) and Ray Train runs the loop in a thread
        # of its own; the worker's torch.set_num_threads then leaves matrix products slower than in a process
        # started with the count (scripts/bench/dpo.py on SmolLM2, 2 cores, medians of 3: Ray/bare 0.76 → 0.88).
        # The count is this node's: a cluster whose nodes differ sets train.threads.
        from rsi.train.speed import cpu_threads  # imports torch, which the driver needs for nothing else

        threads = str(cpu_threads(cfg.threads, cfg.num_workers))
        env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    return env


def train_dpo(preferences: str | Path | datasets.Dataset, base_model: str, out_dir: str, cfg: TrainConfig, *,
              weight_column: str | None = "weight", storage_path: str | None = None,
              overwrite: bool = False, logging_dir: str | None = None) -> TrainResult:
    """DPO fine-tune `base_model` on `preferences` under Ray Train; the policy lands in `out_dir`.

    With `cfg.lora.enabled` the policy is a LoRA adapter folder (rsi.train.lora) on `base_model`, or, when
    `base_model` is itself an adapter folder, that adapter trained on over its recorded base.

    `preferences` is a folder of Parquet files (or the Dataset `load_preferences` returns for it) with
    conversational prompt/chosen/rejected columns. With `weight_column` present, pairs are sampled in
    proportion to it (see `weighted`); other extra columns are dropped. The caller owns `ray.init()`.
    Ray's run records and the checkpoint go under `storage_path` (default: `<out_dir>.ray/` beside it, removed
    after success; on a multi-node cluster pass shared storage); the checkpoint then moves (or downloads) to
    `out_dir`. With `cfg.save_steps`, mid-run checkpoints land there too, and a worker that dies (up to
    `cfg.max_failures` times) resumes from the newest. With `logging_dir`, TRL writes its training curves there
    as TensorBoard events. With `cfg.label_noise`, that share of the pairs trains with chosen and rejected
    swapped (`add_label_noise`); `metrics["label_noise_swapped"]` counts them. Raises ValueError for a bad
    config or corpus before any worker starts.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg.validate()
    out = Path(out_dir).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace it")
    dataset = preferences if not isinstance(preferences, (str, Path)) else load_preferences(preferences)
    table, weighted = prepare_preferences(dataset, weight_column)
    swapped = 0
    if cfg.label_noise > 0:
        table, swapped = add_label_noise(table, pair_keys(dataset), cfg.label_noise, cfg.seed)
        logger.info("train.label_noise=%g: chosen and rejected swapped in %d of %d pairs", cfg.label_noise,
                    swapped, table.num_rows)

    # A URI (s3://, gs://) goes to Ray Train as is: pyarrow opens it.
    storage = (storage_path if "://" in storage_path else Path(storage_path).resolve()) if storage_path \
        else out.parent / f"{out.name}.ray"
    run_name = f"dpo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # fresh: never auto-resume
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}
    env = worker_env(cfg)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"train": cfg, "base_model": str(base_model), "table": table,
                           "logging_dir": logging_dir},
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=str(storage), worker_runtime_env={"env_vars": env},
            # A restarted worker group resumes from the newest reported checkpoint (rsi.train.resume); only that
            # one is needed, and each holds the optimizer state besides the weights.
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    started = time.monotonic()
    try:
        result = trainer.fit()
    except Exception as e:
        if _out_of_space(e):  # a worker's ENOSPC arrives wrapped (WorkerGroupError): say it as the pass does
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out)) from e
        raise
    seconds = time.monotonic() - started
    if result.error is not None:
        if _out_of_space(result.error):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out)) from result.error
        raise RuntimeError(f"DPO training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("DPO training finished without a checkpoint")

    _place_checkpoint(result.checkpoint, out)
    if storage_path is None:
        # The default run folder now holds only Ray's bookkeeping for a checkpoint that has moved.
        shutil.rmtree(storage, ignore_errors=True)
    metrics = dict(result.metrics or {})
    metrics["weighted_sampling"] = weighted
    metrics["label_noise_swapped"] = swapped
    loss = metrics.pop("train_loss", None)
    steps = int(metrics.pop("steps", 0))
    curve = [(int(step), float(value)) for step, value in metrics.pop("curve", [])]
    return TrainResult(checkpoint=str(out), steps=steps, loss=loss, metrics=metrics, seconds=seconds, curve=curve)


def _out_of_space(error: BaseException) -> bool:
    """Whether a disk filled up somewhere under `error`: its causes, or a worker's error that Ray Train carries
    as text only."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e):
            return True
        todo += [e.__cause__, e.__context__, *getattr(e, "worker_failures", {}).values()] \
            if isinstance(getattr(e, "worker_failures", None), dict) else [e.__cause__, e.__context__]
    return False


def _place_checkpoint(checkpoint, out: Path) -> None:
    """Put the checkpoint folder at `out` whole: a rename when it is on this machine, else a download."""
    import pyarrow.fs

    staging = out.parent / f".{out.name}.incoming-{uuid.uuid4().hex[:6]}"
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and Path(checkpoint.path).is_dir():
        shutil.move(checkpoint.path, staging)
    else:
        checkpoint.to_directory(str(staging))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
