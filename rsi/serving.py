"""The pools a run serves from, and their whole life in one place: `serving` starts the policy pool, the judge
pool (the policy pool itself unless `backend.judge_replicas > 0`) and the sandbox pool, and ends them all when
the block ends, however it ends, so that a sweep's next job or a rerun in the same Ray finds the cluster free.

    with serving(cfg, model_path) as pools:
        ray.get(pools.policy.generate.remote(requests))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rsi.config import RsiConfig
from rsi.inference import EngineSpec, PoolConfig, start_pool

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle
    from rsi.sandbox.pool import SandboxPool


@dataclass
class Pools:
    policy: PoolHandle  # serves the policy's generations at the kept version
    judge: PoolHandle  # serves the rankings: the policy pool itself unless backend.judge_replicas > 0
    sandbox: SandboxPool | None  # executes model-written code; None when neither the families nor evals need it
    # negotiation's frozen opponent: the starting weights, never swapped (None unless evals.tasks holds negotiation)
    partner: PoolHandle | None = None

    @property
    def engines(self) -> list[PoolHandle]:
        """Each engine pool once: a swap or a sleep goes to every one of them."""
        return [self.policy] if self.judge is self.policy else [self.policy, self.judge]


@contextmanager
def serving(cfg: RsiConfig, model_path: str, *, sandbox: bool = True) -> Iterator[Pools]:
    """Start the run's pools on `model_path` (Ray must be up); end them when the block ends. `sandbox=False`
    starts no sandbox pool."""
    started: list[PoolHandle] = []
    box = None
    try:
        policy = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "policy"))
        started.append(policy)
        judge = policy
        if cfg.backend.judge_replicas:
            judge = start_pool(engine_spec(cfg, model_path), pool_config(cfg, "judge"))
            started.append(judge)
        partner = None
        if cfg.evals.enabled and "negotiation" in cfg.evals.tasks:
            partner = start_pool(engine_spec(cfg, model_path), replace(pool_config(cfg, "partner"), replicas=1))
            started.append(partner)
        box = start_sandbox(cfg) if sandbox else None
        yield Pools(policy, judge, box, partner)
    finally:
        for pool in started:
            with suppress(Exception):  # a run's own error is what its caller must see, not a teardown's
                end_pool(pool)
        if box is not None:
            with suppress(Exception):
                box.close()


def end_pool(pool: PoolHandle) -> None:
    import ray

    for replica in ray.get(pool.replica_handles.remote()):
        ray.kill(replica, no_restart=True)
    ray.kill(pool, no_restart=True)


def engine_spec(cfg: RsiConfig, model_path: str) -> EngineSpec:
    b = cfg.backend
    lora = cfg.train.lora
    # With LoRA the engines keep `model_path` packed for the whole run; its hash is what every adapter swap is
    # checked against, taken once here rather than by each replica.
    digest = None
    if lora.enabled:
        from rsi.train.lora import base_hash

        digest = base_hash(model_path)
    return EngineSpec(model_path=model_path, backend=b.name, dtype=cfg.model.dtype,
                      max_model_len=cfg.model.max_model_len, threads=b.threads, kv_cache_gb=b.kv_cache_gb,
                      tensor_parallel_size=b.tensor_parallel_size, enforce_eager=b.enforce_eager,
                      seed=cfg.run.seed, engine_kwargs=dict(b.engine_kwargs), sleep_mode=b.colocate,
                      lora_rank=lora.r if lora.enabled else 0, base_hash=digest)


def pool_config(cfg: RsiConfig, name: str) -> PoolConfig:
    b = cfg.backend
    return PoolConfig(replicas=b.judge_replicas if name == "judge" else b.replicas, max_in_flight=b.max_in_flight,
                      max_restarts=b.max_restarts, num_cpus=b.num_cpus, num_gpus=b.num_gpus, name=name)


def start_sandbox(cfg: RsiConfig) -> SandboxPool:
    from rsi.sandbox.pool import SandboxPool

    s = cfg.sandbox
    return SandboxPool(s, num_workers=s.workers, num_cpus_per_worker=0,
                       resources={s.resource: 1} if s.resource else None)
