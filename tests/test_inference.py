"""EngineActor on local Ray, both backends, on the tiny model (tied embeddings, like SmolLM2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.inference import EngineSpec, start_engine
from rsi.judging.ranking import labels_for, parse_ranking, ranking_schema
from rsi.models.tiny import build_tiny_model

pytestmark = pytest.mark.ray

BACKENDS = ["vllm", "hf"]
PROMPTS = [{"messages": [{"role": "user", "content": f"Task {i}: write a parser for dates."}], "max_tokens": 16}
           for i in range(6)]


def _spec(path: Path | str, backend: str) -> EngineSpec:
    return EngineSpec(model_path=str(path), backend=backend, kv_cache_gb=0.25, max_model_len=1024, threads=1)


def _texts(engine, requests) -> list[str]:
    import ray

    return [c["text"] for c in ray.get(engine.generate.remote(requests))]


@pytest.fixture(scope="module")
def second_model(tmp_path_factory) -> Path:
    """Same architecture and tokenizer, other weights: what a training step hands to the engine."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-b") / "model", seed=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_swap_equals_fresh_engine_without_restart(backend: str, tiny_model: Path, second_model: Path,
                                                  ray_local) -> None:
    import ray

    engine = start_engine(_spec(tiny_model, backend), num_cpus=0)
    pid = ray.get(engine.health.remote())["pid"]
    before = _texts(engine, PROMPTS)
    assert _texts(engine, PROMPTS) == before  # greedy is deterministic

    assert ray.get(engine.update_weights.remote(str(second_model))) == 1
    after = _texts(engine, PROMPTS)
    health = ray.get(engine.health.remote())
    assert health["pid"] == pid and health["version"] == 1 and health["weights"] == str(second_model)
    assert after != before

    fresh = start_engine(_spec(second_model, backend), num_cpus=0)
    assert _texts(fresh, PROMPTS) == after
    completions = ray.get(engine.generate.remote(PROMPTS[:1]))
    assert completions[0]["model_version"] == 1
    for actor in (engine, fresh):
        ray.kill(actor)


def test_backends_agree_greedily(tiny_model: Path, ray_local) -> None:
    """fp32 on both: the hf backend is the reference the vLLM engine is checked against."""
    import ray

    engines = [start_engine(_spec(tiny_model, b), num_cpus=0) for b in BACKENDS]
    short = [dict(p, max_tokens=8) for p in PROMPTS]
    outputs = [[c["token_ids"] for c in ray.get(e.generate.remote(short))] for e in engines]
    assert outputs[0] == outputs[1]
    for e in engines:
        ray.kill(e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_structured_rankings_always_parse_and_long_prompts_do_not_sink_the_batch(
        backend: str, tiny_model: Path, ray_local) -> None:
    import ray

    engine = start_engine(_spec(tiny_model, backend), num_cpus=0)
    labels = labels_for(4)
    ranking = [{"messages": [{"role": "user", "content": f"Rank A, B, C, D ({i})."}], "max_tokens": 96,
                "temperature": 0.9, "seed": i, "json_schema": ranking_schema(labels, 30)} for i in range(8)]
    too_long = {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 8}
    out = ray.get(engine.generate.remote(ranking + [too_long]))
    assert [parse_ranking(c["text"], labels).status for c in out[:-1]] == ["ok"] * 8
    assert out[-1]["finish_reason"] == "prompt_too_long" and out[-1]["text"] == ""
    seeded = ray.get(engine.generate.remote(ranking[:2]))
    assert [c["text"] for c in seeded] == [c["text"] for c in out[:2]]  # per-request seeds reproduce
    ray.kill(engine)


def test_stale_tied_head_without_refresh(tiny_model: Path, second_model: Path, ray_local) -> None:
    """The trap the refresh exists for: with tied embeddings vLLM's CPU backend keeps a packed copy of the
    old output layer; skipping the refresh after reload_weights leaves generations off the new weights."""
    import ray

    # Only arguments and imports inside: the worker cannot import this test module.
    @ray.remote(num_cpus=0, max_calls=1, runtime_env={"env_vars": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}})
    def swap_outputs(base: EngineSpec, new_weights: EngineSpec, prompts: list) -> tuple[list, list]:
        import rsi.inference.vllm_backend as vb
        from rsi.inference.engine import EngineActor

        vb._refresh_tied_lm_head = lambda worker: 0  # the step under test, skipped
        engine = EngineActor(base)
        engine.update_weights(new_weights.model_path)
        swapped = [c["token_ids"] for c in engine.generate(prompts)]
        fresh = EngineActor(new_weights)
        return swapped, [c["token_ids"] for c in fresh.generate(prompts)]

    swapped, fresh = ray.get(swap_outputs.remote(_spec(tiny_model, "vllm"), _spec(second_model, "vllm"), PROMPTS))
    assert swapped != fresh
