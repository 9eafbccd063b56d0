"""Where a replica runs: plain GPU/CPU resources at tensor_parallel_size 1, a placement group above it.

With TP > 1, vLLM starts its own Ray workers (one per GPU) and places them in the placement group its
driver runs in; so the EngineActor itself holds no GPU and is scheduled in bundle 0 of a group of TP
one-GPU bundles, capturing child tasks, the pattern OpenRLHF uses for its vLLM engines.
"""

from __future__ import annotations

from typing import Any


def tp_bundles(tensor_parallel_size: int, cpus_per_gpu: float = 1) -> list[dict[str, float]]:
    return [{"GPU": 1, "CPU": cpus_per_gpu} for _ in range(tensor_parallel_size)]


def replica_strategy(tensor_parallel_size: int, num_gpus: float, pg_cache: dict[int, Any] | None = None,
                     index: int = 0) -> tuple[Any, float]:
    """(scheduling strategy or None, num_gpus for the actor) of one replica.

    `pg_cache` keeps one placement group per replica index, so a restarted replica reuses its GPUs.
    """
    if tensor_parallel_size <= 1:
        return None, num_gpus
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = (pg_cache or {}).get(index)
    if pg is None:
        # STRICT_PACK: TP all-reduces every layer; the shards must share a node (NVLink/PCIe, not the network).
        pg = placement_group(tp_bundles(tensor_parallel_size), strategy="STRICT_PACK")
        ray.get(pg.ready())
        if pg_cache is not None:
            pg_cache[index] = pg
    strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0,
                                                placement_group_capture_child_tasks=True)
    return strategy, 0
