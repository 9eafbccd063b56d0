"""The API a replica pool offers its callers (rsi.inference.pool.EnginePool behind a Ray actor handle): what the
loop, the pipeline's stages and the evaluation may call, typed, so that no signature takes a pool as `Any`.

Each method is called through Ray, `ray.get(pool.generate.remote(requests))`; a single EngineActor offers the
same methods, so a stage runs against one engine or a pool alike."""

from __future__ import annotations

from typing import Any, Protocol

from ray import ObjectRef


class RemoteMethod(Protocol):
    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef: ...


class PoolHandle(Protocol):
    generate: RemoteMethod  # (requests: list[dict]) -> list[completion dict], each with its version
    # (checkpoint: str, version: int | None) -> version now served; an HF folder, or (train.lora) an adapter folder
    update_weights: RemoteMethod
    version: RemoteMethod  # () -> version served
    sleep: RemoteMethod  # (level: int = 1) -> list[bool]: frees the GPUs for the trainer where vLLM can
    wake_up: RemoteMethod  # () -> list[bool]
    health: RemoteMethod  # () -> {"replicas": [...], "pids": [...], ...}
    engine_load: RemoteMethod  # () -> summed busy/stepping/stalled seconds of the replicas
    replica_handles: RemoteMethod  # () -> the replicas' actor handles (to end them)
