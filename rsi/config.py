"""Typed configuration: dataclasses mirroring conf/ (Hydra structured configs), validated before Ray starts.

The schema is registered in Hydra's ConfigStore as `rsi_schema`, so an unknown key or a wrongly typed value
fails at composition with the key's name; `validate` then checks what types cannot (paths, ranges, choices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from rsi.judging.config import JudgingConfig
from rsi.train.config import TrainConfig


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # preset: tiny | smollm2-135m | hf
    path: str | None = None  # HF id or folder; overrides the preset's built/cached folder
    dtype: str = "float32"
    max_model_len: int = 2048


@dataclass
class BackendConfig:
    name: str = "vllm"  # vllm | hf
    num_cpus: float = 1
    num_gpus: float = 0
    threads: int = 2
    kv_cache_gb: float = 1.0
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    replicas: int = 1  # policy pool size: EngineActors behind one router
    judge_replicas: int = 0  # a separate judge pool of this size (self-judging: same weights); 0 = the policy pool
    max_in_flight: int = 64  # requests in flight per replica (vLLM batches them together); callers wait beyond
    max_restarts: int = 3  # replacements per replica after it dies; its requests are retried
    weight_sync: str = "disk"  # disk (reload_weights from the checkpoint) | nccl | ipc (pushed by the trainer, GPU)
    colocate: bool = False  # trainer shares the engines' GPUs: engines sleep while it trains (GPU vLLM only)


@dataclass
class RunConfig:
    dir: str = "runs/default"
    seed: int = 0
    resume: bool = False
    commit_sets: int = 64  # finished chains per committed corpus part: at most this much work is redone after a crash


@dataclass
class LoopConfig:
    iterations: int = 1
    chains_in_flight: int = 0  # chains processed at once per family (0: no bound); bounds memory and load


@dataclass
class FamilyConfig:
    """One task family's sizes; mirrors conf/tasks/<family>.yaml. Counts a family does not use are ignored."""

    seeds: list[str] = field(default_factory=list)  # domains, topics or dilemmas: one chain per seed
    candidates: int = 4  # samples of the family's first step per seed: the set the judges rank
    keep: int = 1  # candidates of a set that go on to the next steps
    evals: int = 2  # evaluation suites per kept task (programming)
    solutions: int = 3  # solutions per kept task (programming)
    predictions: int = 3  # predictions per program (python_output)
    max_tokens: int = 256
    temperature: float = 0.9


@dataclass
class SandboxRunConfig:
    """The sandbox pool of a run (mirrors conf/config.yaml `sandbox:`); see rsi.sandbox.config for details."""

    launcher: str = "bwrap"  # bwrap (user namespaces) | landlock (where namespaces are unavailable)
    workers: int = 1  # sandbox actors
    slots: int = 2  # concurrent runs per actor, each under its own uid
    timeout_s: float = 10.0
    memory_mb: int = 1024
    canary: bool = True  # hostile self-test at start: refuse to judge if isolation is broken


@dataclass
class ClusterConfig:
    address: str | None = None
    num_cpus: int | None = None


@dataclass
class RsiConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    tasks: dict[str, FamilyConfig] = field(default_factory=dict)  # family name -> sizes
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    sandbox: SandboxRunConfig = field(default_factory=SandboxRunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


def register_schema() -> None:
    ConfigStore.instance().store(name="rsi_schema", node=RsiConfig)


def to_dataclass(cfg: Any) -> RsiConfig:
    """Turn a composed DictConfig into the typed tree (values already type-checked by Hydra)."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, RsiConfig):
        raise ConfigError(f"config did not compose into RsiConfig: got {type(obj).__name__}")
    return obj


def _require(cond: bool, key: str, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {why}")


def validate(cfg: RsiConfig) -> None:
    """Checks that need no model load and no Ray: ranges and choices, each error naming its key."""
    _require(cfg.model.name in ("tiny", "smollm2-135m", "hf"), "model.name",
             f"unknown preset {cfg.model.name!r} (tiny | smollm2-135m | hf)")
    _require(cfg.model.dtype in ("float32", "bfloat16", "float16"), "model.dtype", f"{cfg.model.dtype!r}")
    _require(cfg.backend.name in ("vllm", "hf"), "backend.name", f"unknown backend {cfg.backend.name!r}")
    _require(cfg.backend.threads >= 1, "backend.threads", "must be >= 1")
    _require(cfg.backend.replicas >= 1, "backend.replicas", "must be >= 1")
    _require(cfg.backend.judge_replicas >= 0, "backend.judge_replicas", "must be >= 0")
    _require(cfg.backend.max_in_flight >= 1, "backend.max_in_flight", "must be >= 1")
    _require(cfg.backend.weight_sync in ("disk", "nccl", "ipc"), "backend.weight_sync",
             f"unknown {cfg.backend.weight_sync!r} (disk | nccl | ipc)")
    _require(cfg.backend.weight_sync == "disk" or cfg.backend.name == "vllm", "backend.weight_sync",
             "pushed weights need the vllm backend")
    _require(cfg.loop.iterations >= 1, "loop.iterations", "must be >= 1")
    _require(cfg.loop.chains_in_flight >= 0, "loop.chains_in_flight", "must be >= 0 (0: no bound)")
    _require(cfg.run.commit_sets >= 1, "run.commit_sets", "must be >= 1")
    _require(len(cfg.tasks) >= 1, "tasks", "pick at least one family, e.g. tasks=[programming]")
    from rsi.tasks import get_family

    for name, fam in cfg.tasks.items():
        try:
            get_family(name)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"tasks.{name}: {e}") from e
        _require(len(fam.seeds) >= 1, f"tasks.{name}.seeds", "needs at least one seed")
        _require(fam.candidates >= 2, f"tasks.{name}.candidates", "a judge ranks sets: needs >= 2 candidates")
        _require(fam.keep >= 1, f"tasks.{name}.keep", "must be >= 1")
        for key in ("evals", "solutions", "predictions", "max_tokens"):
            _require(getattr(fam, key) >= 1, f"tasks.{name}.{key}", "must be >= 1")
    _require(cfg.judging.mode in ("listwise", "pairwise"), "judging.mode",
             f"unknown {cfg.judging.mode!r} (listwise | pairwise)")
    _require(cfg.judging.aggregator in ("bt", "borda"), "judging.aggregator",
             f"unknown {cfg.judging.aggregator!r} (bt | borda)")
    _require(cfg.judging.meta_depth >= 1, "judging.meta_depth", "must be >= 1 (1: no meta-judging)")
    _require(cfg.judging.meta_depth == 1 or cfg.judging.rankings_per_set >= 2, "judging.rankings_per_set",
             "the meta-judge ranks rankings: needs >= 2")
    _require(cfg.judging.rankings_per_set >= 1, "judging.rankings_per_set", "must be >= 1")
    _require(cfg.judging.meta_depth <= 2 or cfg.judging.meta_rankings_per_set >= 2,
             "judging.meta_rankings_per_set", "judging.meta_depth > 2 ranks meta-rankings: needs >= 2")
    _require(cfg.train.deepspeed in ("none", "zero2", "zero3"), "train.deepspeed",
             f"unknown {cfg.train.deepspeed!r} (none | zero2 | zero3)")
    _require(cfg.train.num_workers >= 1, "train.num_workers", "must be >= 1")
    _require(cfg.sandbox.launcher in ("bwrap", "landlock"), "sandbox.launcher",
             f"unknown {cfg.sandbox.launcher!r} (bwrap | landlock)")
    _require(cfg.sandbox.workers >= 1 and cfg.sandbox.slots >= 1, "sandbox.workers", "workers and slots >= 1")
    if cfg.model.path is not None and (cfg.model.path.startswith(("/", ".", "~")) or Path(cfg.model.path).exists()):
        _require(Path(cfg.model.path).expanduser().is_dir(), "model.path",
                 f"no such model folder: {cfg.model.path}")
