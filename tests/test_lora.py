"""LoRA end to end on the tiny model: train.lora's checks, DPO training an adapter (in one process and under Ray
Train), adapter folders and their base hash, hot-loading adapters into hf and vLLM engines and pools, rollback as a
change of route, merge-export, and a run that trains adapters and resumes after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rsi.config import ConfigError, RsiConfig, validate  # noqa: E402
from rsi.inference.adapters import AdapterSlots  # noqa: E402
from rsi.train.config import LoraSettings, TrainConfig  # noqa: E402
from rsi.train.lora import ADAPTER_META, base_hash, check_base, is_adapter, read_meta  # noqa: E402

PROMPTS = [{"messages": [{"role": "user", "content": f"Write solve() for case {i}."}], "max_tokens": 16}
           for i in range(4)]


def _lora(**kw) -> TrainConfig:
    return TrainConfig(lora=LoraSettings(enabled=True, **kw))


def _fake_base(folder: Path, payload: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(payload)
    return folder


def _fake_adapter(folder: Path, base: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / ADAPTER_META).write_text(json.dumps({"base_model": str(base), "base_hash": base_hash(base),
                                                   "parent": None}))
    return folder


# ---- train.lora: bad values fail at start, naming the key (unit) ------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(("kw", "key"), [({"r": 0}, "train.lora.r"), ({"r": 1024}, "train.lora.r"),
                                         ({"target_modules": ["q_proj", "qq_proj"]}, "train.lora.target_modules"),
                                         ({"target_modules": []}, "train.lora.target_modules"),
                                         ({"alpha": 0.0}, "train.lora.alpha"),
                                         ({"dropout": 1.0}, "train.lora.dropout")])
def test_bad_lora_settings_fail_naming_the_key(kw: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"^{key}:"):
        _lora(**kw).validate()
    cfg = RsiConfig()
    cfg.tasks = {}
    cfg.train = _lora(**kw)
    with pytest.raises(ConfigError, match=f"^{key}:"):
        validate(cfg)


@pytest.mark.unit
def test_r_zero_fails_even_with_lora_off() -> None:
    with pytest.raises(ValueError, match="^train.lora.r:"):
        TrainConfig(lora=LoraSettings(r=0)).validate()


@pytest.mark.unit
@pytest.mark.parametrize(("kwargs", "key"), [({"enable_lora": False}, "backend.engine_kwargs.enable_lora"),
                                             ({"max_lora_rank": 8}, "backend.engine_kwargs.max_lora_rank"),
                                             ({"max_loras": 1}, "backend.engine_kwargs.max_loras")])
def test_engines_that_cannot_serve_the_adapter_fail_naming_the_key(kwargs: dict, key: str) -> None:
    from hydra import compose, initialize_config_dir

    from rsi.cli import CONF_DIR
    from rsi.config import register_schema, to_dataclass

    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = to_dataclass(compose("config", overrides=["train.lora.enabled=true", "train.lora.r=16"]))
    cfg.backend.engine_kwargs = kwargs
    with pytest.raises(ConfigError, match=f"^{key}:"):
        validate(cfg)


@pytest.mark.unit
def test_adapter_slots_keep_the_served_and_the_previous_adapter() -> None:
    slots = AdapterSlots()
    assert slots.admit("/v1") == ("a0", True, [])
    assert slots.admit("/v2") == ("a1", True, [])
    assert slots.admit("/v1") == ("a0", False, [])  # rollback: loaded already, a change of route
    assert slots.admit("/v3") == ("a2", True, ["a1"])  # v1 (served before) stays, v2 goes
    assert list(slots.names) == ["/v1", "/v3"] and AdapterSlots.number("a2") == 3


@pytest.mark.unit
def test_an_adapter_of_other_base_weights_is_refused_in_one_line_naming_both(tmp_path: Path) -> None:
    base, other = _fake_base(tmp_path / "base", b"one"), _fake_base(tmp_path / "other", b"two")
    adapter = _fake_adapter(tmp_path / "v1", other)
    check_base(str(_fake_adapter(tmp_path / "ok", base)), str(base), base_hash(base))
    with pytest.raises(ValueError) as err:
        check_base(str(adapter), str(base), base_hash(base))
    message = str(err.value)
    assert "\n" not in message and str(other) in message and str(base) in message
    assert base_hash(other)[:12] in message and base_hash(base)[:12] in message


@pytest.mark.unit
def test_the_pool_refuses_a_mismatched_adapter_before_it_pauses(tmp_path: Path) -> None:
    from rsi.inference.engine import EngineSpec
    from rsi.inference.pool import EnginePool, PoolConfig

    base, other = _fake_base(tmp_path / "base", b"one"), _fake_base(tmp_path / "other", b"two")
    calls: list[str] = []

    class Replica:
        class update_weights:  # noqa: N801 - an actor method's shape
            @staticmethod
            def remote(path: str, version: int) -> None:
                calls.append(path)

    pool = EnginePool(EngineSpec(model_path=str(base), backend="hf", lora_rank=8), PoolConfig(replicas=2),
                      launcher=lambda spec, index: Replica())
    with pytest.raises(ValueError, match="the pool serves"):
        asyncio.run(pool.update_weights(str(_fake_adapter(tmp_path / "v1", other)), 1))
    assert calls == [] and asyncio.run(pool.version()) == 0 and not pool._paused
    plain = EnginePool(EngineSpec(model_path=str(base), backend="hf"), PoolConfig(), launcher=lambda s, i: Replica())
    with pytest.raises(ValueError, match="without LoRA serving"):
        asyncio.run(plain.update_weights(str(_fake_adapter(tmp_path / "v2", base)), 1))


@pytest.mark.unit
def test_merge_refuses_a_folder_that_is_no_adapter(tmp_path: Path, capsys) -> None:
    from rsi.cli import model_main

    assert model_main(["merge", str(_fake_base(tmp_path / "full", b"x")), "--out", str(tmp_path / "o")]) == 2
    assert "not an adapter folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.unit
def test_adapter_meta_records_the_base_and_provenance_names_it(tmp_path: Path) -> None:
    from rsi.train.lora import weights_record, write_meta

    base = _fake_base(tmp_path / "base", b"one")
    adapter = tmp_path / "v1"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    meta = write_meta(adapter, str(base), None)
    assert meta == read_meta(adapter) and meta["base_model"] == str(base.resolve())
    assert weights_record(str(adapter)) == {"checkpoint": str(adapter), "adapter": True, "parent": None,
                                            "base_model": str(base.resolve()), "base_hash": base_hash(base)}
    assert weights_record(str(base)) == {"checkpoint": str(base), "adapter": False}
    (base / "model.safetensors").write_bytes(b"changed")  # the hash follows the bytes, not the path
    assert base_hash(base) != meta["base_hash"]


@pytest.mark.unit
def test_merge_refuses_an_adapter_whose_base_changed(tmp_path: Path, capsys) -> None:
    from rsi.cli import model_main

    base = _fake_base(tmp_path / "base", b"one")
    adapter = _fake_adapter(tmp_path / "v1", base)
    (base / "model.safetensors").write_bytes(b"two")
    assert model_main(["merge", str(adapter), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "whose weights have changed since" in err and err.count("\n") == 1


# ---- DPO training an adapter in one process (tier ray: the tiny model, no Ray started) ---------------------------
def _dataset():
    import datasets
    from test_train import _pairs

    from rsi.train.data import prepare_preferences, table_to_dataset

    table, _ = prepare_preferences(datasets.Dataset.from_list(_pairs()), "weight")
    return table_to_dataset(table)


def _train_in_process(start: str, out: Path, work: Path, steps: int = 3) -> tuple[object, Path]:
    import torch
    from transformers import AutoTokenizer

    from rsi.train.lora import base_of, policy_model, write_meta
    from rsi.train.save import check_saved, save_policy
    from rsi.train.worker import build_trainer

    cfg = TrainConfig(max_steps=steps, learning_rate=5e-3, max_length=256, lora=LoraSettings(enabled=True, r=8))
    model, base = policy_model(start, cfg.lora, torch.float32)
    trainer, _ = build_trainer(cfg, model, AutoTokenizer.from_pretrained(base_of(start)), _dataset(), str(work))
    trainer.train()
    save_policy(trainer, str(out))
    write_meta(out, base, start if start != base else None)
    check_saved(str(out))
    return trainer, out


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory) -> dict[str, Path]:
    """v1: a fresh adapter on the tiny model; v2: v1's adapter trained on (iterations stack by continuing)."""
    root = tmp_path_factory.mktemp("adapters")
    _, v1 = _train_in_process(str(tiny_model), root / "v1", root / "w1")
    _, v2 = _train_in_process(str(v1), root / "v2", root / "w2")
    return {"v1": v1, "v2": v2}


@pytest.mark.ray
def test_dpo_trains_an_adapter_against_the_base_with_the_adapter_disabled(tiny_model: Path, tmp_path: Path) -> None:
    trainer, out = _train_in_process(str(tiny_model), tmp_path / "v1", tmp_path / "w")
    assert trainer.ref_model is None, "the reference must be the policy's own base, not a second model"
    first = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert first == pytest.approx(math.log(2), abs=1e-4)  # zero-initialised adapter: policy == reference
    names = set(os.listdir(out))
    assert {"adapter_config.json", "adapter_model.safetensors", ADAPTER_META} <= names
    assert not any(n.startswith("model") for n in names), "an adapter checkpoint holds no base weights"
    meta = read_meta(out)
    assert meta["base_model"] == str(tiny_model.resolve()) and meta["base_hash"] == base_hash(tiny_model)
    assert meta["parent"] is None
    assert (out / "adapter_model.safetensors").stat().st_size < (tiny_model / "model.safetensors").stat().st_size


@pytest.mark.ray
def test_a_continued_adapter_keeps_its_start_as_reference_and_saves_alone(adapters: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    from safetensors import safe_open

    trainer, out = _train_in_process(str(adapters["v1"]), tmp_path / "v2", tmp_path / "w", steps=1)
    assert set(trainer.model.peft_config) == {"default", "ref"}  # the frozen start, an adapter's size
    first = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert first == pytest.approx(math.log(2), abs=1e-4)  # the reference is v1, the policy trained from
    assert read_meta(out)["parent"] == str(adapters["v1"])
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert not any(".ref." in k for k in f.keys())


# ---- engines and pools serving adapters --------------------------------------------------------------------------
def _tokens(engine, prompts=PROMPTS) -> list[list[int]]:
    return [c["token_ids"] for c in engine.generate(prompts)]


@pytest.mark.ray
def test_hf_engine_swaps_adapters_rolls_back_by_route_and_matches_merged_weights(
        tiny_model: Path, adapters: dict[str, Path], tmp_path: Path) -> None:
    from rsi.inference.engine import EngineActor, EngineSpec
    from rsi.train.lora import merge_adapter

    engine = EngineActor(EngineSpec(model_path=str(tiny_model), backend="hf", lora_rank=8, max_model_len=4096))
    v0 = _tokens(engine)
    assert engine.update_weights(str(adapters["v1"]), 1) == 1
    out = engine.generate(PROMPTS)
    assert {c["model_version"] for c in out} == {1}
    v1 = [c["token_ids"] for c in out]
    engine.update_weights(str(adapters["v2"]), 2)
    v2 = _tokens(engine)
    assert v1 != v0 and v2 != v1
    engine.update_weights(str(adapters["v1"]), 1)  # the gate's rollback: v1 is still loaded
    assert _tokens(engine) == v1 and set(engine.backend.model.peft_config) == {"a0", "a1"}
    engine.update_weights(str(tiny_model), 0)  # back to the base: every adapter off
    assert _tokens(engine) == v0

    # Greedy tokens equal a fresh engine's on the merged weights. The tolerance is none: the tiny model's float32
    # x·W + (x·A)·B·s and x·(W + B·A·s) differ by rounding only, far below its logits' gaps on these prompts.
    merged = merge_adapter(str(adapters["v2"]), str(tmp_path / "merged"))
    fresh = EngineActor(EngineSpec(model_path=str(merged), backend="hf", max_model_len=4096))
    assert _tokens(fresh) == v2

    with pytest.raises(ValueError, match="the pool serves"):
        other = tmp_path / "other"
        other.mkdir()
        for f in tiny_model.iterdir():
            (other / f.name).write_bytes(f.read_bytes() + (b" " if f.name == "config.json" else b""))
        engine.update_weights(str(_fake_adapter(tmp_path / "bad", other)), 3)
    assert engine.version() == 0 and _tokens(engine) == v0


@pytest.mark.ray
@pytest.mark.slow
def test_vllm_engine_serves_adapters_with_lora_and_matches_merged_weights(
        tiny_model: Path, adapters: dict[str, Path], tmp_path: Path) -> None:
    from rsi.inference.engine import EngineActor, EngineSpec
    from rsi.train.lora import merge_adapter

    spec = EngineSpec(model_path=str(tiny_model), backend="vllm", lora_rank=8, max_model_len=4096, kv_cache_gb=0.25,
                      threads=1)
    engine = EngineActor(spec)
    v0 = _tokens(engine)
    engine.update_weights(str(adapters["v2"]), 2)
    out = engine.generate(PROMPTS)
    v2 = [c["token_ids"] for c in out]
    assert {c["model_version"] for c in out} == {2} and v2 != v0
    engine.update_weights(str(adapters["v1"]), 1)
    v1 = _tokens(engine)
    engine.update_weights(str(adapters["v2"]), 2)  # rollback to the previous adapter: no load
    assert _tokens(engine) == v2
    third = tmp_path / "v3"  # a third folder: the oldest adapter is unloaded, two stay
    shutil.copytree(adapters["v1"], third)
    engine.update_weights(str(third), 3)
    assert _tokens(engine) == v1 and engine.backend.llm.llm_engine.list_loras() == {1, 3}  # v2 (served before) and v3
    engine.update_weights(str(tiny_model), 0)
    assert _tokens(engine) == v0
    del engine
    merged = merge_adapter(str(adapters["v2"]), str(tmp_path / "merged"))
    fresh = EngineActor(EngineSpec(model_path=str(merged), backend="vllm", max_model_len=4096, kv_cache_gb=0.25,
                                   threads=1))
    assert _tokens(fresh) == v2  # punica's CPU path vs merged weights: equal greedy tokens (see the hf test)


@pytest.mark.ray
def test_merge_export_loads_with_plain_transformers(tiny_model: Path, adapters: dict[str, Path],
                                                     tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsi.cli import model_main

    assert model_main(["merge", str(adapters["v2"]), "--out", str(tmp_path / "export")]) == 0
    out = tmp_path / "export"
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("def solve(nums):", return_tensors="pt")
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapters["v2"]))
    with torch.no_grad():
        # float32 rounding of two summation orders (x·W + x·A·B·s against x·(W + B·A·s)): 1.5e-5 at most here
        torch.testing.assert_close(merged(**ids).logits, stacked(**ids).logits, atol=1e-4, rtol=1e-4)
    assert json.loads((out / "rsi_merged_from.json").read_text())["base_hash"] == base_hash(tiny_model)


# ---- under Ray: Ray Train, pools, a run (not run on a shared 2-core box without a free Ray) -----------------------
@pytest.mark.ray
@pytest.mark.slow
def test_train_dpo_lora_under_ray_train_then_continues_the_adapter(tiny_model: Path, tmp_path: Path,
                                                                    ray_local) -> None:
    from test_train import _pairs, _write

    from rsi.train import train_dpo

    prefs = _write(tmp_path / "prefs", _pairs())
    cfg = TrainConfig(max_steps=2, learning_rate=5e-3, max_length=256, lora=LoraSettings(enabled=True, r=8))
    v1 = train_dpo(str(prefs), str(tiny_model), str(tmp_path / "v1"), cfg)
    assert is_adapter(v1.checkpoint) and v1.steps == 2 and math.isfinite(v1.loss)
    assert read_meta(v1.checkpoint)["base_hash"] == base_hash(tiny_model)
    v2 = train_dpo(str(prefs), v1.checkpoint, str(tmp_path / "v2"), cfg)
    assert read_meta(v2.checkpoint)["parent"] == v1.checkpoint
    assert read_meta(v2.checkpoint)["base_model"] == str(tiny_model.resolve())


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_pool_swaps_adapters_rolls_back_and_restarts_on_the_adapter(backend: str, tiny_model: Path,
                                                                     adapters: dict[str, Path], tmp_path: Path,
                                                                     ray_local) -> None:
    import ray

    from rsi.inference import EngineSpec, PoolConfig, start_engine, start_pool
    from rsi.serving import end_pool
    from rsi.train.lora import merge_adapter

    spec = EngineSpec(model_path=str(tiny_model), backend=backend, lora_rank=8, max_model_len=4096,
                      kv_cache_gb=0.25, threads=1, base_hash=base_hash(tiny_model))
    pool = start_pool(spec, PoolConfig(replicas=2, num_cpus=0))
    try:
        def tokens(version: int) -> list[list[int]]:
            out = ray.get(pool.generate.remote(PROMPTS))
            assert {c["model_version"] for c in out} == {version}
            return [c["token_ids"] for c in out]

        v0 = tokens(0)
        pids = ray.get(pool.health.remote())["pids"]
        assert ray.get(pool.update_weights.remote(str(adapters["v1"]), 1)) == 1
        v1 = tokens(1)
        ray.get(pool.update_weights.remote(str(adapters["v2"]), 2))
        v2 = tokens(2)
        assert v2 != v1
        merged = merge_adapter(str(adapters["v2"]), str(tmp_path / "merged"))  # the pool's greedy tokens = merged
        fresh = start_engine(EngineSpec(model_path=str(merged), backend=backend, max_model_len=4096,
                                        kv_cache_gb=0.25, threads=1), num_cpus=0)
        assert [c["token_ids"] for c in ray.get(fresh.generate.remote(PROMPTS))] == v2
        ray.kill(fresh)
        ray.get(pool.update_weights.remote(str(adapters["v1"]), 1))  # rejected: route back
        assert tokens(1) == v1 and ray.get(pool.health.remote())["pids"] == pids
        bad = _fake_adapter(tmp_path / "bad", _fake_base(tmp_path / "other", b"x"))
        with pytest.raises(ray.exceptions.RayTaskError, match="the pool serves"):
            ray.get(pool.update_weights.remote(str(bad), 3))
        assert tokens(1) == v1
        ray.kill(ray.get(pool.replica_handles.remote())[0], no_restart=True)  # replaced on base + v1's adapter
        assert tokens(1) == v1
        ray.get(pool.update_weights.remote(str(tiny_model), 0))
        assert tokens(0) == v0
    finally:
        end_pool(pool)


def _run(tiny_model: Path, run_dir: Path, resume: bool) -> subprocess.Popen:
    overrides = [
        "model=tiny", f"model.path={tiny_model}", "backend=hf", "backend.num_cpus=0", "cluster.num_cpus=4",
        f"run.dir={run_dir}", "run.seed=7", f"run.resume={str(resume).lower()}", "loop.iterations=2",
        "tasks=[open_ended]", "tasks.open_ended.seeds=[queues,dates,csv files,logs]",
        "tasks.open_ended.candidates=2", "tasks.open_ended.max_tokens=24", "judging.max_tokens=40",
        "judging.rationale_chars=16", "train.max_steps=1", "loop.chains_in_flight=1", "run.commit_chains=1",
        "train.lora.enabled=true", "train.lora.r=8", "train.learning_rate=1e-3",
        # every candidate kept: the resumed run must serve v1's adapter, and v2 must continue it
        "evals.tasks=[format_following]", "evals.limit=2", "gate.enabled=false",
    ]
    return subprocess.Popen([sys.executable, "-m", "rsi.cli", "run", *overrides], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_lora_run_resumes_after_sigkill_on_the_last_kept_adapter(tiny_model: Path, tmp_path: Path) -> None:
    """Iteration 0 trains and keeps v1's adapter; the run is killed with SIGKILL inside iteration 1 and resumed:
    the pools reload v1's adapter (iteration 1's rows say version 1), v2 continues it, and every checkpoint is
    an adapter recording the tiny model's hash."""
    from rsi.corpus.stream import read_manifest, read_table
    from rsi.history import load_history

    run_dir = tmp_path / "run"
    proc = _run(tiny_model, run_dir, resume=False)
    deadline = time.monotonic() + 900
    while not (run_dir / "iterations" / "iter_000.json").is_file():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)  # inside iteration 1's corpus pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _run(tiny_model, run_dir, resume=True)
    output, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, output[-3000:]

    history = load_history(run_dir)
    assert [(h.model_version, h.new_version, h.kept_version) for h in history] == [(0, 1, 1), (1, 2, 2)]
    v1, v2 = history[0].checkpoint, history[1].checkpoint
    for checkpoint in (v1, v2):
        assert is_adapter(checkpoint) and read_meta(checkpoint)["base_hash"] == base_hash(tiny_model)
    assert history[1].trained_from == v1 and read_meta(v2)["parent"] == v1
    versions = read_table(run_dir / "corpus" / "iter_001", "performances", ["model_version"])
    assert set(versions.column("model_version").to_pylist()) == {1}
    served = read_manifest(run_dir / "corpus" / "iter_001")["weights"]  # the corpus' provenance names the adapter
    assert served["checkpoint"] == v1 and served["adapter"] and served["base_hash"] == base_hash(tiny_model)
