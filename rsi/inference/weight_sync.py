"""Trainer → pool weight push (GPU): vLLM's weight-transfer API, driven from the trainer, into every replica.

`backend.weight_sync=nccl`: the trainer's rank 0 broadcasts packed buffers over one NCCL group holding itself
(rank 0) and every GPU worker of every replica (ranks 1…); this is the path OpenRLHF and TRL take.
`backend.weight_sync=ipc`: CUDA IPC handles, for engines on the trainer's own GPU (one NCCL group cannot hold
two ranks on one device). Disk (`pool.update_weights(checkpoint)`) is the portable default and the fallback
when a push fails: the trainer writes the checkpoint anyway, since a restarted replica loads from it.

With DeepSpeed ZeRO-3 each rank holds a shard of every parameter: all ranks iterate the source together (each
parameter is gathered, a collective) and only rank 0 sends.

    # on every trainer rank, after the last optimizer step (the model unwrapped: engine.module):
    push_weights(model, pool, version=v + 1, checkpoint=ckpt_dir, backend="nccl", rank=rank)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any


class PoolSyncClient:
    """vLLM's `VLLMWeightSyncClient` protocol over a pool's replicas (EngineActor handles).

    vLLM's own Ray client sends one init payload to every handle; our replicas are independent engines (not
    one data-parallel deployment), so each needs its own NCCL rank offset: replica i's workers take ranks
    1 + i·TP … 1 + (i+1)·TP − 1.
    """

    def __init__(self, handles: list[Any], *, backend: str, tensor_parallel_size: int, version: int,
                 checkpoint: str | None):
        self.handles = handles
        self.backend = backend
        self.tp = tensor_parallel_size
        self.version = version
        self.checkpoint = checkpoint

    def init_payloads(self, init_info: dict[str, Any]) -> list[dict[str, Any]]:
        if self.backend != "nccl":
            return [dict(init_info) for _ in self.handles]
        return [{**init_info, "rank_offset": 1 + i * self.tp} for i in range(len(self.handles))]

    def world_size(self) -> int:
        return 1 + len(self.handles) * self.tp

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        import ray

        ray.get([h.init_weight_transfer.remote(p) for h, p in zip(self.handles, self.init_payloads(init_info))])

    def shutdown_weight_transfer_engine(self) -> None:
        import ray

        ray.get([h.shutdown_weight_transfer.remote() for h in self.handles])

    def start_weight_update(self) -> None:
        import ray

        ray.get([h.start_weight_update.remote() for h in self.handles])

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        import ray

        ray.get([h.receive_weights.remote(update_info) for h in self.handles])

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        import ray

        # The pool's integer version, not vLLM's string tag: it is what every completion records.
        ray.get([h.finish_weight_update.remote(self.version, self.checkpoint) for h in self.handles])


class GatheredSource:
    """The trainer's parameters as vLLM's `WeightSource`: names as in the HF checkpoint, full tensors.

    ZeRO-3 parameters (they carry `ds_shape`) are gathered one at a time, on every rank in the same order,
    and copied out before the shard is released; others pass through. `dtype` casts on the way (a bf16
    engine fed by an fp32 trainer receives half the bytes).
    """

    def __init__(self, module: Any, dtype: Any = None):
        self.module = module
        self.dtype = dtype

    def metadata(self) -> list[Any]:
        from vllm.distributed.weight_transfer.base import ParamMeta

        return [ParamMeta(name, self.dtype or p.dtype, tuple(getattr(p, "ds_shape", p.shape)))
                for name, p in self.module.named_parameters()]

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for name, p in self.module.named_parameters():
            if hasattr(p, "ds_shape"):
                import deepspeed

                with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                    yield name, p.data.to(self.dtype or p.dtype).clone()
            else:
                yield name, p.data.to(self.dtype or p.dtype)

    # vLLM's WeightSource defaults, for duck typing without subclassing at import time (vLLM is optional here)
    def held_names(self) -> None:
        return None

    def groups(self) -> list[list[str]]:
        from vllm.distributed.weight_transfer.base import layerwise_groups

        return layerwise_groups([m.name for m in self.metadata()])

    def iter_groups(self) -> Iterator[list[tuple[str, Any]]]:
        by_name = dict(iter(self))
        for group in self.groups():
            yield [(n, by_name[n]) for n in group]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _as_weight_source(source: GatheredSource) -> Any:
    """Wrap in vLLM's ABC where its checks need an instance of it."""
    from vllm.distributed.weight_transfer.base import WeightSource

    class _Source(WeightSource):
        def metadata(self) -> list[Any]:
            return source.metadata()

        def __iter__(self) -> Iterator[tuple[str, Any]]:
            return iter(source)

    return _Source()


def push_weights(module: Any, pool: Any, *, version: int, checkpoint: str | None, backend: str = "nccl",
                 tensor_parallel_size: int = 1, rank: int = 0, dtype: Any = None) -> int | None:
    """Push `module`'s weights into every replica of `pool` (call on every trainer rank); returns the version.

    Rank 0 pauses the pool (in-flight batches finish on the old weights), pushes, then resumes it at
    `version`; if the push fails the pool reloads `checkpoint` from disk instead, so it never serves a
    half-written model. Other ranks only take part in the gathers and return None.
    """
    import ray

    source = _as_weight_source(GatheredSource(module, dtype))
    if rank != 0:
        _send(backend, PoolSyncClient([], backend=backend, tensor_parallel_size=tensor_parallel_size,
                                      version=version, checkpoint=checkpoint), source, rank)
        return None
    handles = ray.get(pool.begin_swap.remote())
    client = PoolSyncClient(handles, backend=backend, tensor_parallel_size=tensor_parallel_size, version=version,
                            checkpoint=checkpoint)
    pushed = False
    try:
        _send(backend, client, source, rank)
        pushed = True
    finally:
        # Runs on failure too: the pool must not stay paused; without a push it swaps from disk.
        final = ray.get(pool.end_swap.remote(version, checkpoint, pushed))
    return int(final)


def _send(backend: str, client: PoolSyncClient, source: Any, rank: int) -> None:
    if backend == "nccl":
        import ray
        from vllm.distributed.weight_transfer.nccl_engine import (
            NCCLTrainerInitInfo,
            NCCLTrainerWeightTransferEngine,
        )

        info = NCCLTrainerInitInfo(master_address=ray.util.get_node_ip_address(), master_port=_free_port(),
                                   world_size=client.world_size(), rank=rank)
        engine: Any = NCCLTrainerWeightTransferEngine.trainer_init(info, client=client, source=source)
    elif backend == "ipc":
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCTrainerWeightTransferEngine

        engine = IPCTrainerWeightTransferEngine.trainer_init(IPCTrainerInitInfo(rank=rank), client=client,
                                                             source=source)
    else:
        raise ValueError(f"weight_sync={backend!r}: push needs nccl or ipc (disk swaps use pool.update_weights)")
    try:
        engine.send_weights()
    finally:
        # One group per push: replicas restarted since the last push would not be in a cached group.
        engine.shutdown()
        if rank == 0 and client.handles:
            client.shutdown_weight_transfer_engine()
