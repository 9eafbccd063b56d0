"""EngineActor: one long-lived model server (a Ray actor) whose weights can change under it.

Ray Data stages and the loop talk to it through its handle; it is not owned by any pipeline, so the loop can
swap new weights in between (or during) passes without restarting the process or reloading the engine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from rsi.inference.requests import GenerationRequest, as_request


@dataclass
class EngineSpec:
    """Everything an actor needs to build its backend; plain data so it crosses Ray unchanged."""

    model_path: str
    backend: str = "vllm"  # vllm | hf
    dtype: str = "float32"
    max_model_len: int = 2048
    threads: int = 2
    kv_cache_gb: float = 1.0
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    seed: int = 0
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    initial_version: int = 0  # a replica restarted on version v's checkpoint reports v, not 0
    sleep_mode: bool = False  # colocated with a trainer: let the engine free its GPU memory while training runs
    # LoRA serving (train.lora): the largest adapter rank to serve, 0 for none. The base weights stay loaded and
    # a swap to an adapter folder loads the adapter alone.
    lora_rank: int = 0
    adapter: str | None = None  # adapter to serve from the start (a restarted replica's), at initial_version
    base_hash: str | None = None  # rsi.train.lora.base_hash(model_path), computed once by whoever starts pools


def adapter_spec(path: str) -> EngineSpec | None:
    """An EngineSpec serving the adapter folder at `path` on its recorded base; None for a full model folder."""
    from rsi.train.lora import adapter_rank, is_adapter, read_meta

    if not is_adapter(path):
        return None
    meta = read_meta(path)
    return EngineSpec(model_path=meta["base_model"], adapter=str(path), lora_rank=adapter_rank(path),
                      base_hash=meta["base_hash"])


class EngineActor:
    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self._version = spec.initial_version
        self._weights_path = spec.model_path
        t0 = time.perf_counter()
        if spec.backend == "vllm":
            from rsi.inference.vllm_backend import VLLMBackend

            self.backend: Any = VLLMBackend(
                spec.model_path, dtype=spec.dtype, max_model_len=spec.max_model_len, threads=spec.threads,
                kv_cache_gb=spec.kv_cache_gb, tensor_parallel_size=spec.tensor_parallel_size,
                enforce_eager=spec.enforce_eager, seed=spec.seed, engine_kwargs=spec.engine_kwargs,
                sleep_mode=spec.sleep_mode, lora_rank=spec.lora_rank,
            )
        elif spec.backend == "hf":
            from rsi.inference.hf_backend import HFBackend

            self.backend = HFBackend(spec.model_path, dtype=spec.dtype, threads=spec.threads, seed=spec.seed,
                                     max_model_len=spec.max_model_len)
        else:
            raise ValueError(f"backend.name={spec.backend!r}: expected 'vllm' or 'hf'")
        if hasattr(self.backend, "version"):  # a threaded backend tags completions itself, under its lock
            self.backend.version = self._version
        self._base, self._base_hash = spec.model_path, spec.base_hash  # the full weights loaded: adapters go on them
        if spec.adapter:
            self.update_weights(spec.adapter, spec.initial_version)
        self.start_seconds = time.perf_counter() - t0

    def generate(self, requests: list[GenerationRequest | dict[str, Any]]) -> list[dict[str, Any]]:
        if not requests:
            return []
        completions = self.backend.generate([as_request(r) for r in requests], self._version)
        return [c.to_dict() for c in completions]

    def update_weights(self, path: str, version: int | None = None) -> int:
        """Load the checkpoint folder at `path` into the running engine; returns the new version.

        A pool passes `version` so every replica (restarted ones included) reports the pool's number.
        An adapter folder (train.lora) is loaded beside the adapters already loaded and requests go to it; the
        base model's own folder routes them back to no adapter. Neither touches the base weights.
        """
        from rsi.train.lora import check_base, is_adapter

        if not os.path.isdir(path):
            raise FileNotFoundError(f"no checkpoint folder at {path}")
        new = self._version + 1 if version is None else version
        if is_adapter(path):
            if not self.spec.lora_rank:
                raise ValueError(f"{path} is a LoRA adapter, but this engine was started without LoRA serving "
                                 f"(EngineSpec.lora_rank=0; a run sets it from train.lora)")
            check_base(path, self._base, self.base_hash())
            self.backend.load_adapter(path, new)
        elif self.spec.lora_rank and os.path.realpath(path) == os.path.realpath(self._base):
            self.backend.use_base(new)
        else:
            self.backend.load_weights(path, new)
            self._base, self._base_hash = path, None
        self._version = new
        self._weights_path = path
        return self._version

    def base_hash(self) -> str:
        from rsi.train.lora import base_hash

        if self._base_hash is None:
            self._base_hash = base_hash(self._base)
        return self._base_hash

    def sleep(self, level: int = 1) -> bool:
        """Free accelerator memory while a colocated trainer runs; False where the backend cannot."""
        return bool(getattr(self.backend, "sleep", lambda level: False)(level))

    def wake_up(self) -> bool:
        return bool(getattr(self.backend, "wake_up", lambda: False)())

    def version(self) -> int:
        return self._version

    def engine_load(self) -> dict[str, float]:
        """Cumulative busy/step seconds, steps and batch sizes (rsi.inference.vllm_backend.EngineLoad); empty
        where the backend does not account for them."""
        return getattr(self.backend, "engine_load", dict)()

    def health(self) -> dict[str, Any]:
        return {"version": self._version, "backend": self.spec.backend, "weights": self._weights_path,
                "pid": os.getpid(), "start_seconds": self.start_seconds}


def concurrent_calls(spec: EngineSpec) -> int:
    """Calls one actor serves at once. vLLM: many, batched together step by step (continuous batching).
    transformers: one, since its generate batches a call's requests only."""
    return 64 if spec.backend == "vllm" else 1


def engine_env(spec: EngineSpec) -> dict[str, str]:
    # Ray starts worker processes at nice 15, below the driver and Ray's daemons; an engine is the work itself,
    # and on a busy CPU box a niced engine loses a quarter of its steps' speed to any other process.
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": str(spec.threads),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"), "RAY_worker_niceness": "0"}


def launch_engine(spec: EngineSpec, *, num_cpus: float = 1, num_gpus: float = 0, name: str | None = None,
                  scheduling_strategy: Any = None) -> Any:
    """Create an EngineActor without waiting for its model to load (pools start replicas in parallel)."""
    import ray

    options: dict[str, Any] = dict(num_cpus=num_cpus, num_gpus=num_gpus, name=name,
                                   runtime_env={"env_vars": engine_env(spec)},
                                   max_concurrency=concurrent_calls(spec))
    if scheduling_strategy is not None:
        options["scheduling_strategy"] = scheduling_strategy
    return ray.remote(EngineActor).options(**options).remote(spec)


def start_engine(spec: EngineSpec, *, num_cpus: float = 1, num_gpus: float = 0, name: str | None = None,
                 scheduling_strategy: Any = None) -> Any:
    """Start an EngineActor on the cluster and wait until its model is loaded; returns the actor handle."""
    import ray

    actor = launch_engine(spec, num_cpus=num_cpus, num_gpus=num_gpus, name=name,
                          scheduling_strategy=scheduling_strategy)
    ray.get(actor.health.remote())  # surfaces a load failure here, not at the first generate
    return actor
