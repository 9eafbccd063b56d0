"""EnginePool: N long-lived EngineActor replicas behind one async router actor with the engine's own API.

Ray Data stages call `ray.get(pool.generate.remote(requests))` exactly as on a single engine. The router
splits each call's requests over the replicas, merges requests of concurrent calls into engine batches, and
bounds the requests in flight per replica (`max_in_flight`); callers simply wait, which is the backpressure.

Routing is least-loaded. vLLM replicas batch concurrent calls step by step (continuous batching), so the
queue is split over the replicas with room, the least loaded first, up to `max_in_flight` each; a call that
arrives mid-generation joins the running batch. transformers replicas batch one call at a time, so they only
get work when idle, the queue split evenly among the idle ones.

A replica that dies is replaced (up to `max_restarts` times per replica) by a fresh actor loaded from the
pool's current checkpoint at the pool's current version, and its unfinished requests go back to the front of
the queue. A retried request is answered exactly once to its caller, and since corpus ids are content
hashes, a retried row is the same row: nothing is lost and nothing duplicated.

A swap (`update_weights`) pauses dispatch, lets the in-flight batches finish on the old weights, swaps every
replica, then resumes: each completion carries the version of the replica that produced it. A swap to a LoRA
adapter folder (train.lora) is checked against the base weights the pool holds before anything pauses; the
replicas load the adapter beside the one they serve, and a swap back to that one, or to the base folder, is a
change of route.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsi.inference.engine import EngineSpec
from rsi.inference.requests import as_request


@dataclass
class PoolConfig:
    replicas: int = 1
    max_in_flight: int = 64  # requests outstanding per replica (sent, not yet answered)
    # True: replicas batch concurrent calls step by step (vLLM), so work is sent whenever a replica has room.
    # False: a call is one batch (transformers), so a replica only gets work when idle. None: from the backend.
    continuous: bool | None = None
    max_restarts: int = 3  # replacements per replica before it is given up
    # An idle replica facing a short queue waits this long for concurrent callers to add to its batch: vLLM's
    # throughput grows with batch size, and Ray Data submits a stage's batches a few milliseconds apart.
    batch_wait_s: float = 0.02
    num_cpus: float = 1  # per replica (tests use 0: few logical CPUs otherwise deadlock the scheduler)
    num_gpus: float = 0  # per replica; with tensor parallelism the GPUs come from a placement group instead
    name: str = "policy"


@dataclass
class _Replica:
    index: int
    handle: Any
    restarts: int = 0
    in_flight: int = 0  # requests sent and not yet answered
    alive: bool = True
    served: int = 0


# Errors that mean the replica process is gone (or unreachable): retry elsewhere, restart it.
def _replica_lost(exc: BaseException) -> bool:
    import ray.exceptions as rex

    return isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError, rex.OutOfMemoryError))


class EnginePool:
    """The router actor (async): holds the replica handles, the request queue and the pool's version."""

    def __init__(self, spec: EngineSpec, config: PoolConfig, launcher: Callable[..., Any] | None = None):
        self.spec = spec
        self.config = config
        # launcher(spec, index) -> actor handle; replaceable so tests can drive the router with stand-in actors.
        self._launch = launcher or _default_launcher(config)
        self._continuous = config.continuous if config.continuous is not None else spec.backend == "vllm"
        self._version = spec.initial_version
        self._weights = spec.model_path  # what the replicas serve: a full model folder, or an adapter folder
        self._base = spec.model_path  # the full weights under it (train.lora: the same for the whole run)
        self._queue: deque[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = deque()
        self._paused = False
        self._changed = asyncio.Event()  # anything that may let the dispatcher send work
        self._idle = asyncio.Event()  # nothing in flight: a swap may proceed
        self._idle.set()
        self._swap_lock = asyncio.Lock()
        self._restarting: dict[int, asyncio.Task[None]] = {}
        self._replicas = [_Replica(i, self._launch(spec, i)) for i in range(config.replicas)]
        self._dispatcher: asyncio.Task[None] | None = None
        self._calls = 0
        self._retried = 0
        self._swap_seconds: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly: keep them until they end

    async def ready(self) -> dict[str, Any]:
        """Wait until every replica has loaded its model (they load in parallel), restarted ones included."""
        await asyncio.gather(*(r.handle.health.remote() for r in self._replicas if r.alive))
        if self._restarting:
            await asyncio.gather(*self._restarting.values(), return_exceptions=True)
        return await self.health()

    # ---- the engine API -------------------------------------------------------------------------------------
    async def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not requests:
            return []
        self._ensure_dispatcher()
        # Checked here, per caller: requests of many callers share an engine batch, and one malformed
        # request must fail its own caller, not everyone batched with it.
        checked = [as_request(r).to_dict() for r in requests]
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        self._queue.extend(zip(checked, futures))
        self._changed.set()
        return list(await asyncio.gather(*futures))

    async def update_weights(self, path: str, version: int | None = None) -> int:
        """Swap every replica to the checkpoint at `path` (disk path: vLLM `reload_weights`); returns the version."""
        self._check_adapter(path)  # a mismatched adapter fails before the pool pauses; it keeps serving
        async with self._swap_lock:
            t0 = time.perf_counter()
            await self._drain()
            new = self._version + 1 if version is None else version
            try:
                await self._swap_all(path, new)
            finally:
                self._resume()
            self._swap_seconds.append(time.perf_counter() - t0)
            return new

    async def version(self) -> int:
        return self._version

    def _check_adapter(self, path: str) -> None:
        """An adapter folder must be servable here: LoRA on, trained on the base weights the replicas hold."""
        from rsi.train.lora import base_hash, check_base, is_adapter

        if not is_adapter(path):
            return
        if not self.spec.lora_rank:
            raise ValueError(f"{path} is a LoRA adapter, but pool {self.config.name} was started without LoRA "
                             f"serving (train.lora.enabled=false)")
        if self.spec.base_hash is None or self.spec.model_path != self._base:
            self.spec = dataclasses.replace(self.spec, model_path=self._base, base_hash=base_hash(self._base))
        check_base(path, self._base, self.spec.base_hash)

    async def health(self) -> dict[str, Any]:
        alive = [r for r in self._replicas if r.alive]
        replies = await asyncio.gather(*(r.handle.health.remote() for r in alive), return_exceptions=True)
        pids = [h["pid"] for h in replies if isinstance(h, dict)]  # a swap keeps them; a restart changes one
        return {
            "name": self.config.name, "version": self._version, "weights": self._weights, "pids": pids,
            "pid": pids[0] if pids else None,  # as on one engine: the first replica's
            "replicas": [{"index": r.index, "alive": r.alive, "restarts": r.restarts, "in_flight": r.in_flight,
                          "served": r.served} for r in self._replicas],
            "queued": len(self._queue), "calls": self._calls, "retried": self._retried, "paused": self._paused,
            "swap_seconds": list(self._swap_seconds),
        }

    async def engine_load(self) -> dict[str, float]:
        """The replicas' cumulative load figures, summed (rsi.inference.vllm_backend.EngineLoad)."""
        loads = await asyncio.gather(*(r.handle.engine_load.remote() for r in self._replicas if r.alive),
                                     return_exceptions=True)
        total: dict[str, float] = {}
        for load in loads:
            if isinstance(load, dict):
                for key, value in load.items():
                    total[key] = total.get(key, 0) + value
        return total

    # ---- colocation and the replicas ------------------------------------------------------------------------
    async def sleep(self, level: int = 1) -> list[bool]:
        """Drain and put every replica to sleep (colocated training); stays paused until `wake_up`."""
        await self._swap_lock.acquire()
        await self._drain()
        return list(await asyncio.gather(*(r.handle.sleep.remote(level) for r in self._replicas if r.alive)))

    async def wake_up(self) -> list[bool]:
        try:
            return list(await asyncio.gather(*(r.handle.wake_up.remote() for r in self._replicas if r.alive)))
        finally:
            self._resume()
            self._swap_lock.release()

    async def replica_handles(self) -> list[Any]:
        return [r.handle for r in self._replicas]

    # ---- internals ------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._paused:
                continue
            if not self._queue:
                continue
            if not any(r.alive for r in self._replicas) and not self._restarting:
                self._fail_all(RuntimeError(f"pool {self.config.name}: every replica is gone"))
                continue
            if self._continuous:
                self._fill()
                continue
            idle = [r for r in self._replicas if r.alive and r.in_flight == 0]
            if idle and self.config.batch_wait_s > 0 and len(self._queue) < self.config.max_in_flight * len(idle):
                await asyncio.sleep(self.config.batch_wait_s)
                if self._paused:
                    continue
                idle = [r for r in self._replicas if r.alive and r.in_flight == 0]
            for k, replica in enumerate(idle):
                # Split what is queued evenly over the idle replicas; one batch each, at most max_in_flight.
                share = math.ceil(len(self._queue) / (len(idle) - k))
                take = min(share, self.config.max_in_flight)
                batch = self._take(take)
                if not batch:
                    break
                self._send(replica, batch)

    def _fill(self) -> None:
        """Continuous replicas: least-loaded first, the queue split evenly over the replicas with room."""
        cap = self.config.max_in_flight
        room = [r for r in self._replicas if r.alive and r.in_flight < cap]
        while self._queue and room:
            room.sort(key=lambda r: r.in_flight)
            replica = room[0]
            take = min(math.ceil(len(self._queue) / len(room)), cap - replica.in_flight)
            batch = self._take(take)
            if not batch:
                return
            self._send(replica, batch)
            room = [r for r in room if r.in_flight < cap]

    def _take(self, n: int) -> list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]]:
        batch = []
        while self._queue and len(batch) < n:
            item = self._queue.popleft()
            if not item[1].done():  # its caller went away (cancelled): nothing to compute
                batch.append(item)
        return batch

    def _send(self, replica: _Replica, batch: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]]) -> None:
        replica.in_flight += len(batch)
        self._idle.clear()
        self._calls += 1
        self._spawn(self._call(replica, replica.handle, batch))

    async def _call(self, replica: _Replica, handle: Any,
                    batch: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]]) -> None:
        try:
            outputs = await handle.generate.remote([req for req, _ in batch])
        except Exception as exc:  # noqa: BLE001 - sorted below: lost replica → retry, anything else → caller
            if _replica_lost(exc):
                self._retried += len(batch)
                self._queue.extendleft(reversed([item for item in batch if not item[1].done()]))
                self._lose(replica, handle)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
        else:
            replica.served += len(batch)
            for (_, fut), out in zip(batch, outputs):
                if not fut.done():  # a caller that went away leaves its future cancelled
                    fut.set_result(out)
        finally:
            replica.in_flight -= len(batch)
            if all(r.in_flight == 0 for r in self._replicas):
                self._idle.set()
            self._changed.set()

    def _lose(self, replica: _Replica, handle: Any) -> None:
        if handle is not replica.handle or not replica.alive:
            return  # already replaced by an earlier failure of the same actor
        replica.alive = False
        if replica.restarts >= self.config.max_restarts:
            return
        replica.restarts += 1
        self._restarting[replica.index] = self._spawn(self._restart(replica))

    async def _restart(self, replica: _Replica) -> None:
        import ray

        try:
            ray.kill(replica.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is usually dead already
            pass
        # The replacement loads the pool's current weights and reports the pool's version, so rows it serves
        # are tagged exactly like rows from replicas that were swapped in place.
        from rsi.train.lora import is_adapter

        adapter = self._weights if is_adapter(self._weights) else None  # loaded over the pool's base
        spec = dataclasses.replace(self.spec, model_path=self._base, adapter=adapter, initial_version=self._version,
                                   base_hash=self.spec.base_hash if self._base == self.spec.model_path else None)
        while True:
            handle = self._launch(spec, replica.index)
            try:
                await handle.health.remote()
                break
            except Exception as exc:  # noqa: BLE001
                if not _replica_lost(exc) or replica.restarts >= self.config.max_restarts:
                    self._restarting.pop(replica.index, None)
                    self._changed.set()
                    return
                replica.restarts += 1
        replica.handle, replica.alive = handle, True
        self._restarting.pop(replica.index, None)
        self._changed.set()

    async def _drain(self) -> None:
        self._paused = True
        await self._idle.wait()
        if self._restarting:
            await asyncio.gather(*self._restarting.values(), return_exceptions=True)

    async def _swap_all(self, path: str, version: int) -> None:
        replicas = [r for r in self._replicas if r.alive]
        results = await asyncio.gather(*(r.handle.update_weights.remote(path, version) for r in replicas),
                                       return_exceptions=True)
        from rsi.train.lora import is_adapter

        self._weights, self._version = path, version
        if not is_adapter(path):
            self._base = path
        for replica, result in zip(replicas, results):
            if isinstance(result, BaseException):
                if not _replica_lost(result):
                    raise result
                self._lose(replica, replica.handle)  # restarts on the new weights
        if self._restarting:
            await asyncio.gather(*self._restarting.values(), return_exceptions=True)

    def _resume(self) -> None:
        self._paused = False
        self._changed.set()

    def _fail_all(self, exc: Exception) -> None:
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(exc)


def _default_launcher(config: PoolConfig) -> Callable[[EngineSpec, int], Any]:
    from rsi.inference.engine import launch_engine
    from rsi.inference.placement import replica_strategy

    groups: dict[int, Any] = {}

    def launch(spec: EngineSpec, index: int) -> Any:
        strategy, num_gpus = replica_strategy(spec.tensor_parallel_size, config.num_gpus, groups, index)
        return launch_engine(spec, num_cpus=config.num_cpus, num_gpus=num_gpus, scheduling_strategy=strategy)

    return launch


def start_pool(spec: EngineSpec, config: PoolConfig, *, launcher: Callable[..., Any] | None = None,
               name: str | None = None) -> Any:
    """Start the router and its replicas; returns the router handle once every replica has loaded."""
    import ray

    # An async actor: thousands of concurrent generate calls wait on futures in one event loop. It needs no CPU.
    router = ray.remote(EnginePool).options(num_cpus=0, name=name, max_concurrency=10_000).remote(
        spec, config, launcher)
    ray.get(router.ready.remote())
    return router
