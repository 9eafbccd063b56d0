"""A 2-replica vLLM pool on the tiny model behind a streaming Ray Data pipeline: every row exactly once
when a replica is killed mid-run, and a mid-stream swap tags each row with the version that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rsi.corpus.ids import content_id
from rsi.inference import EngineSpec, PoolConfig, start_engine, start_pool
from rsi.models.tiny import build_tiny_model

pytestmark = pytest.mark.ray

ROWS = 48
BATCH = 4


def _spec(path: Path | str) -> EngineSpec:
    # threads=1: two replicas share this box's cores
    return EngineSpec(model_path=str(path), backend="vllm", kv_cache_gb=0.25, max_model_len=1024, threads=1)


def _request(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Row {i}: write a function that sorts words."}],
            "max_tokens": 12}


def _generate(batch: dict[str, np.ndarray], *, pool: Any, hook: Any = None) -> dict[str, list[Any]]:
    """A pipeline stage: the same call shape the corpus stages use on an engine."""
    import ray

    rows = [int(i) for i in batch["i"]]
    if hook is not None:
        hook(rows)
    outs = ray.get(pool.generate.remote([_request(i) for i in rows]))
    return {"i": rows, "id": [content_id("performance", prompt=_request(i)["messages"], version=o["model_version"])
                              for i, o in zip(rows, outs)],
            "tokens": [list(o["token_ids"]) for o in outs], "version": [o["model_version"] for o in outs]}


def _stream(pool: Any, hook: Any = None, concurrency: int | None = None) -> list[dict[str, Any]]:
    import ray.data

    ds = ray.data.range(ROWS).rename_columns({"id": "i"}).map_batches(
        _generate, batch_size=BATCH, num_cpus=0, concurrency=concurrency, fn_kwargs={"pool": pool, "hook": hook})
    return list(ds.iter_rows())


@pytest.fixture(scope="module", autouse=True)
def by_value(ray_local):
    import sys

    from ray import cloudpickle

    # Ray workers cannot import this test module by name; ship the stage functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def second_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-b") / "model", seed=1)


@pytest.fixture(scope="module")
def pool(tiny_model: Path, ray_local) -> Any:
    import ray

    handle = start_pool(_spec(tiny_model), PoolConfig(replicas=2, max_in_flight=8, num_cpus=0))
    yield handle
    for h in ray.get(handle.replica_handles.remote()):
        ray.kill(h)
    ray.kill(handle)


@pytest.fixture(scope="module")
def reference(tiny_model: Path, second_model: Path, ray_local) -> dict[int, list[list[int]]]:
    """Greedy tokens of every row from a fresh single engine on each weights version."""
    import ray

    refs = {}
    for version, path in ((0, tiny_model), (1, second_model)):
        engine = start_engine(_spec(path), num_cpus=0)
        refs[version] = [c["token_ids"] for c in ray.get(engine.generate.remote([_request(i) for i in range(ROWS)]))]
        ray.kill(engine)
    assert refs[0] != refs[1]
    return refs


def test_pool_serves_a_stream_and_survives_a_killed_replica(pool: Any, reference: dict) -> None:
    import ray

    replicas = ray.get(pool.replica_handles.remote())

    def kill_once(rows: list[int]) -> None:
        if 12 in rows:  # mid-stream, while other batches are on the replicas
            ray.kill(replicas[0], no_restart=True)

    rows = _stream(pool, hook=kill_once)
    assert sorted(r["i"] for r in rows) == list(range(ROWS))  # every row, exactly once
    assert len({r["id"] for r in rows}) == ROWS
    for r in rows:
        assert r["version"] == 0 and list(r["tokens"]) == reference[0][r["i"]]
    health = ray.get(pool.ready.remote())
    assert health["replicas"][0]["restarts"] == 1 and all(x["alive"] for x in health["replicas"])


def test_swap_mid_stream_tags_rows_and_matches_a_fresh_engine(pool: Any, reference: dict,
                                                              second_model: Path) -> None:
    import ray

    def swap_once(rows: list[int]) -> None:
        if 24 in rows:  # this batch waits for the swap: it and every later submission run on v1
            ray.get(pool.update_weights.remote(str(second_model), 1))

    rows = _stream(pool, hook=swap_once, concurrency=3)
    assert sorted(r["i"] for r in rows) == list(range(ROWS))
    versions = {r["version"] for r in rows}
    assert versions == {0, 1}
    for r in rows:  # greedy tokens equal a fresh engine on the version the row is tagged with
        assert list(r["tokens"]) == reference[r["version"]][r["i"]], (r["i"], r["version"])
    assert all(r["version"] == 1 for r in rows if r["i"] >= 24 + 3 * BATCH)
    assert ray.get(pool.version.remote()) == 1
