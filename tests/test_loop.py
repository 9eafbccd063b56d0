"""End to end on the tiny model: two full iterations per backend, the same live engine throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus.stream import read_table
from rsi.inference import EngineSpec, start_engine
from rsi.loop import run_loop

pytestmark = pytest.mark.e2e


def _config(tiny_model: Path, backend: str, run_dir: Path) -> RsiConfig:
    cfg = RsiConfig()
    cfg.model.name, cfg.model.path, cfg.model.max_model_len = "tiny", str(tiny_model), 4096
    cfg.backend.name, cfg.backend.kv_cache_gb, cfg.backend.num_cpus = backend, 0.25, 0
    cfg.run.dir = str(run_dir)
    cfg.loop.iterations = 2
    # open_ended: the cheapest family (no sandbox); the loop's mechanics are what this test is about
    cfg.tasks = {"open_ended": FamilyConfig(seeds=["a friend's secret", "credit taken at work"], candidates=3,
                                            max_tokens=48)}
    cfg.judging.max_tokens, cfg.judging.rationale_chars = 48, 24
    cfg.train.learning_rate = 1e-3  # large enough that two steps visibly move a random model
    return cfg


@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_two_iterations_end_to_end(backend: str, tiny_model: Path, tmp_path: Path, ray_local) -> None:
    import datasets
    import ray

    cfg = _config(tiny_model, backend, tmp_path / "run")
    result = run_loop(cfg)
    summaries = result.summaries

    # the engine's version went 0 → 1 → 2 in one process: swapped, never restarted
    assert [s.model_version for s in summaries] == [0, 1]
    assert [s.new_version for s in summaries] == [1, 2]
    assert len({s.engine_pid for s in summaries}) == 1
    assert ray.get(result.engine.health.remote())["pid"] == summaries[0].engine_pid

    for it, s in enumerate(summaries):
        corpus = tmp_path / "run" / "corpus" / f"iter_{it:03d}"
        perf, judg, pref = (read_table(corpus, t) for t in ("performances", "judgments", "preferences"))
        assert perf.num_rows == 2 * 3 and judg.num_rows == 2 * (2 + 1) and pref.num_rows > 0
        assert set(perf.column("model_version").to_pylist()) == {it}
        assert set(judg.column("judge_model_version").to_pylist()) == {it}
        assert set(judg.column("step").to_pylist()) == {"rank_responses", "rank_response_rankings"}
        assert (corpus / "manifest.json").exists()
        assert s.dpo_loss is not None

    # preferences load as a HF dataset and DPOTrainer accepts them as they are
    files = sorted(str(p) for p in (tmp_path / "run" / "corpus").glob("iter_*/preferences/*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == sum(s.preferences for s in summaries)
    _dpo_accepts(ds, tiny_model, tmp_path / "dpo")

    # greedy outputs of the swapped engine equal a fresh engine on the saved checkpoint
    prompts = [{"messages": [{"role": "user", "content": f"Create a task about {d}."}], "max_tokens": 24}
               for d in ("queues", "dates", "csv files")]
    live = [c["token_ids"] for c in ray.get(result.engine.generate.remote(prompts))]
    fresh_engine = start_engine(EngineSpec(model_path=summaries[-1].checkpoint, backend=backend,
                                           kv_cache_gb=0.25, max_model_len=4096), num_cpus=0)
    fresh = [c["token_ids"] for c in ray.get(fresh_engine.generate.remote(prompts))]
    assert live == fresh
    for actor in (result.engine, fresh_engine):
        ray.kill(actor)


def _dpo_accepts(ds, model_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_path),
        args=DPOConfig(output_dir=str(out), use_cpu=True, bf16=False, report_to=[], max_steps=1,
                       per_device_train_batch_size=2),
        train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(model_path),
    )
    assert len(trainer.train_dataset) == ds.num_rows
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
