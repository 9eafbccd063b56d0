"""EnginePool router logic on local Ray, driven by stand-in engine actors (no model): routing, backpressure,
retries after a replica dies, drain-then-swap version tagging, sleep/wake."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rsi.inference import EngineSpec, PoolConfig, start_pool

pytestmark = pytest.mark.ray


class FakeEngine:
    """Answers `<prompt>@v<version>`; records how many calls overlap and the largest batch it was sent.

    A request whose content ends in `|crash:<path>` makes the process exit mid-batch if that marker file is
    missing (once: it creates the file first), as a crashed engine would.
    """

    def __init__(self, spec: EngineSpec):
        self.version_ = spec.initial_version
        self.weights = spec.model_path
        self.active = 0
        self.max_active = 0
        self.active_requests = 0
        self.max_active_requests = 0
        self.max_batch = 0
        self.lock = threading.Lock()
        self.delay = float(spec.engine_kwargs.get("delay", 0.01))

    def generate(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.lock:
            self.active += 1
            self.active_requests += len(requests)
            self.max_active = max(self.max_active, self.active)
            self.max_active_requests = max(self.max_active_requests, self.active_requests)
            self.max_batch = max(self.max_batch, len(requests))
        try:
            prompts = [r["messages"][0]["content"].split("|crash:") for r in requests]
            for parts in prompts:
                if len(parts) == 2 and not os.path.exists(parts[1]):
                    Path(parts[1]).touch()
                    os._exit(1)
            time.sleep(self.delay)  # pacing only: lets concurrent calls pile up at the router
            return [{"text": f"{parts[0]}@v{self.version_}", "model_version": self.version_,
                     "num_tokens": 1, "num_prompt_tokens": 1, "finish_reason": "stop", "token_ids": []}
                    for parts in prompts]
        finally:
            with self.lock:
                self.active -= 1
                self.active_requests -= len(requests)

    def update_weights(self, path: str, version: int | None = None) -> int:
        self.weights = path
        self.version_ = self.version_ + 1 if version is None else version
        return self.version_

    def stats(self) -> dict[str, int]:
        return {"max_active": self.max_active, "max_active_requests": self.max_active_requests,
                "max_batch": self.max_batch, "version": self.version_}

    def sleep(self, level: int = 1) -> bool:
        return True

    def wake_up(self) -> bool:
        return True

    def version(self) -> int:
        return self.version_

    def health(self) -> dict[str, Any]:
        return {"version": self.version_, "weights": self.weights, "pid": os.getpid()}


def fake_launcher(spec: EngineSpec, index: int) -> Any:
    import ray

    # Threaded, so overlapping calls would be visible to the fake: the router must never send them.
    return ray.remote(FakeEngine).options(num_cpus=0, max_concurrency=8).remote(spec)


@pytest.fixture(scope="module")
def by_value(ray_local):
    from ray import cloudpickle

    # Ray workers cannot import this test module by name; ship the stand-ins by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _pool(replicas: int = 2, max_in_flight: int = 4, delay: float = 0.01, max_restarts: int = 2,
          continuous: bool = True) -> Any:
    spec = EngineSpec(model_path="/weights/v0", engine_kwargs={"delay": delay})
    return start_pool(spec, PoolConfig(replicas=replicas, max_in_flight=max_in_flight, max_restarts=max_restarts,
                                       num_cpus=0, continuous=continuous), launcher=fake_launcher)


def _requests(n: int, prefix: str = "p", crash: dict[int, str] | None = None) -> list[dict[str, Any]]:
    crash = crash or {}
    return [{"messages": [{"role": "user", "content": f"{prefix}{i}" + (f"|crash:{crash[i]}" if i in crash else "")}]}
            for i in range(n)]


@pytest.mark.parametrize("continuous", [True, False])
def test_least_loaded_routing_and_bounded_in_flight(by_value, continuous: bool) -> None:
    import ray

    pool = _pool(replicas=2, max_in_flight=4, continuous=continuous)
    calls = [pool.generate.remote(_requests(10, prefix=f"c{k}-")) for k in range(6)]
    outs = ray.get(calls)
    for k, out in enumerate(outs):  # each caller gets its own answers, in order
        assert [o["text"] for o in out] == [f"c{k}-{i}@v0" for i in range(10)]
    stats = ray.get([h.stats.remote() for h in ray.get(pool.replica_handles.remote())])
    # never more than max_in_flight requests on a replica; call-level engines never get overlapping calls
    assert all(s["max_active_requests"] <= 4 and s["max_batch"] <= 4 for s in stats)
    if not continuous:
        assert all(s["max_active"] == 1 for s in stats)
    served = [r["served"] for r in ray.get(pool.health.remote())["replicas"]]
    assert sum(served) == 60 and min(served) > 0  # both replicas took work


def test_dead_replica_is_restarted_and_its_batch_retried(by_value, tmp_path: Path) -> None:
    import ray

    pool = _pool(replicas=2, max_in_flight=8)
    marker = str(tmp_path / "crashed")
    requests = _requests(40, crash={17: marker})  # the replica that gets request 17 dies holding its batch
    out = ray.get(pool.generate.remote(requests))
    assert [o["text"] for o in out] == [f"p{i}@v0" for i in range(40)]  # every row once, in order
    health = ray.get(pool.ready.remote())  # waits for the replacement to load
    assert os.path.exists(marker)
    assert sum(r["restarts"] for r in health["replicas"]) == 1 and health["retried"] >= 1
    assert all(r["alive"] for r in health["replicas"])


def test_gone_for_good_fails_the_callers(by_value, tmp_path: Path) -> None:
    import ray

    pool = _pool(replicas=1, max_in_flight=8, max_restarts=0)
    requests = _requests(4, crash={0: str(tmp_path / "crashed")})
    with pytest.raises(ray.exceptions.RayTaskError, match="every replica is gone"):
        ray.get(pool.generate.remote(requests))


def test_restarted_replica_serves_the_current_version(by_value, tmp_path: Path) -> None:
    import ray

    pool = _pool(replicas=1, max_in_flight=8)
    assert ray.get(pool.update_weights.remote("/weights/v1")) == 1
    requests = _requests(6, crash={2: str(tmp_path / "crashed")})
    out = ray.get(pool.generate.remote(requests))
    assert {o["model_version"] for o in out} == {1}
    assert ray.get(ray.get(pool.replica_handles.remote())[0].health.remote())["weights"] == "/weights/v1"


def test_swap_waits_for_in_flight_and_tags_every_row(by_value) -> None:
    import ray

    pool = _pool(replicas=2, max_in_flight=4, delay=0.05)
    before = [pool.generate.remote(_requests(8, prefix=f"a{k}-")) for k in range(4)]
    swap = pool.update_weights.remote("/weights/v1")
    # An async actor may start calls out of submission order, so "after" means after the swap began: the pool
    # reports itself paused (draining), or the swap is already over.
    while not ray.get(pool.health.remote())["paused"] and not ray.wait([swap], timeout=0)[0]:
        time.sleep(0.002)
    after = [pool.generate.remote(_requests(8, prefix=f"b{k}-")) for k in range(4)]
    assert ray.get(swap) == 1
    rows = [o for out in ray.get(before + after) for o in out]
    assert len(rows) == 64
    for o in rows:  # the text says which weights answered; the tag must say the same
        assert o["text"].endswith(f"@v{o['model_version']}")
    assert {o["model_version"] for out in ray.get(after) for o in out} == {1}  # queued behind the swap
    assert ray.get(pool.version.remote()) == 1


def test_sleep_and_wake_up_keep_the_version(by_value) -> None:
    import ray

    pool = _pool(replicas=2)
    assert ray.get(pool.update_weights.remote("/weights/v2", 2)) == 2
    out = ray.get(pool.generate.remote(_requests(4)))
    assert {o["model_version"] for o in out} == {2}
    assert ray.get(pool.sleep.remote()) == [True, True]
    assert ray.get(pool.wake_up.remote()) == [True, True]
    assert ray.get(pool.generate.remote(_requests(1)))[0]["model_version"] == 2


def test_a_malformed_request_fails_only_its_caller(by_value) -> None:
    import ray

    pool = _pool(replicas=1, delay=0.05)
    good = [pool.generate.remote(_requests(4, prefix=f"g{k}-")) for k in range(3)]
    bad = pool.generate.remote([{"messages": [{"role": "user", "content": "x"}], "max_tokenz": 3}])
    with pytest.raises(ray.exceptions.RayTaskError, match="max_tokenz"):
        ray.get(bad)
    assert [len(out) for out in ray.get(good)] == [4, 4, 4]
