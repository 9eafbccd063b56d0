"""End to end on the tiny model: two full iterations per backend, the same live engine throughout; held-out
evaluation of every version; a rejected candidate rolled back to the kept weights by the same hot-swap."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus.stream import read_table
from rsi.inference import EngineSpec, start_engine
from rsi.loop import run_loop
from rsi.serving import serving

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
    # a few items of every held-out task: the scoring path, not the figures, is under test here
    cfg.evals.limit, cfg.evals.enabled = 3, backend == "vllm"
    cfg.gate.enabled = False  # a random model's metrics move by chance: the gate is tested on its own below
    return cfg


@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_two_iterations_end_to_end(backend: str, tiny_model: Path, tmp_path: Path, ray_local) -> None:

    cfg = _config(tiny_model, backend, tmp_path / "run")
    with serving(cfg, str(tiny_model)) as pools:  # held past the run, to compare its live engine below
        summaries = run_loop(cfg, pools=pools)
        _check_two_iterations(cfg, backend, summaries, pools.policy, tiny_model, tmp_path)


def _check_two_iterations(cfg: RsiConfig, backend: str, summaries: list, engine, tiny_model: Path,
                          tmp_path: Path) -> None:
    import datasets
    import ray

    # the engine's version went 0 → 1 → 2 in one process: swapped, never restarted
    assert [s.model_version for s in summaries] == [0, 1]
    assert [s.new_version for s in summaries] == [1, 2]
    assert len({s.engine_pid for s in summaries}) == 1
    assert ray.get(engine.health.remote())["pid"] == summaries[0].engine_pid

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
    live = [c["token_ids"] for c in ray.get(engine.generate.remote(prompts))]
    fresh_engine = start_engine(EngineSpec(model_path=summaries[-1].checkpoint, backend=backend,
                                           kv_cache_gb=0.25, max_model_len=4096), num_cpus=0)
    fresh = [c["token_ids"] for c in ray.get(fresh_engine.generate.remote(prompts))]
    assert live == fresh
    ray.kill(fresh_engine)

    # every part of an iteration is timed; start-up belongs to the first iteration alone
    assert summaries[0].seconds["startup"] > 0 and summaries[1].seconds["startup"] == 0
    assert all(s.seconds["corpus_pass"] > 0 and s.seconds["dpo"] > 0 and s.gen_tokens_per_s > 0 for s in summaries)
    # the pass reports how much of it the engine had requests in flight (vLLM accounts for it, transformers not)
    assert all((0 < s.engine_busy <= 1) if backend == "vllm" else s.engine_busy is None for s in summaries)
    if backend == "vllm":  # every version evaluated on the same items, and the report renders them
        from rsi.evals.compare import load_eval_dir
        from rsi.report import build_report

        for version in (0, 1, 2):
            metrics, items = load_eval_dir(str(tmp_path / "run" / "evals" / f"v{version}"))
            assert set(metrics) == set(cfg.evals.tasks) and all(len(v) == 3 for v in items.values())
        assert all(set(s.evals["candidate"]) == set(cfg.evals.tasks) for s in summaries)
        from rsi.evals.gate import ids_of_half

        claim = ids_of_half(items["humaneval"], "claim")  # v0 is compared on the half the gate never decided on
        assert summaries[1].evals["vs_v0"].get("humaneval", {}).get("n", 0) == len(claim)
        assert build_report(tmp_path / "run").is_file()
        # DPO's own training curves (TRL's report_to) sit beside the loop's metrics for TensorBoard
        for version in (1, 2):
            assert list((tmp_path / "run" / "tb" / f"dpo_v{version}").rglob("events.out.tfevents.*")), version
    else:
        assert all(s.decision == "ungated" and s.evals == {} for s in summaries)


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


def test_rejected_candidate_is_rolled_back(tiny_model: Path, tmp_path: Path, ray_local) -> None:
    """gate.min_gain=1.0 rejects every candidate: the pools serve the kept (base) weights again, greedy tokens
    equal a fresh engine on them, the next iteration trains from them, and the rejected checkpoints and
    corpora stay on disk, marked."""


    cfg = _config(tiny_model, "vllm", tmp_path / "run")
    cfg.evals.tasks = cfg.gate.metrics = ["output_prediction", "format_following"]
    cfg.gate.enabled, cfg.gate.min_gain = True, 1.0
    with serving(cfg, str(tiny_model)) as pools:
        s = run_loop(cfg, pools=pools)
        _check_rolled_back(s, pools.policy, tiny_model, tmp_path)


def _check_rolled_back(s: list, engine, tiny_model: Path, tmp_path: Path) -> None:
    import json

    import ray

    assert [x.decision for x in s] == ["rejected", "rejected"] and all("min_gain" in x.gate_reasons[0] for x in s)
    assert [x.model_version for x in s] == [0, 0] and [x.kept_version for x in s] == [0, 0]
    assert [x.new_version for x in s] == [1, 2]  # versions never repeat: v1 is not overwritten by v2
    assert s[1].trained_from == s[0].trained_from == str(tiny_model)
    assert ray.get(engine.version.remote()) == 0
    for it, x in enumerate(s):
        assert (Path(x.checkpoint) / "config.json").is_file()
        manifest = json.loads((tmp_path / "run" / "corpus" / f"iter_{it:03d}" / "manifest.json").read_text())
        assert manifest["gate"]["decision"] == "rejected"
        perf = read_table(tmp_path / "run" / "corpus" / f"iter_{it:03d}", "performances")
        assert set(perf.column("model_version").to_pylist()) == {0}
    assert [x["decision"] for x in json.loads((tmp_path / "run" / "summary.json").read_text())] == ["rejected"] * 2

    prompts = [{"messages": [{"role": "user", "content": f"Create a task about {d}."}], "max_tokens": 24}
               for d in ("queues", "dates", "csv files")]
    live = [c["token_ids"] for c in ray.get(engine.generate.remote(prompts))]
    fresh_engine = start_engine(EngineSpec(model_path=str(tiny_model), backend="vllm", kv_cache_gb=0.25,
                                           max_model_len=4096), num_cpus=0)
    fresh = [c["token_ids"] for c in ray.get(fresh_engine.generate.remote(prompts))]
    assert live == fresh
    ray.kill(fresh_engine)


def test_a_failed_run_ends_its_pools(tiny_model: Path, tmp_path: Path, ray_local,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails after its pools started ends them (nobody else holds their handles), so a sweep's
    next job or a rerun in the same Ray finds the cluster free; the run's own error is what the caller sees."""
    import time

    from ray.util.state import list_actors

    import rsi.loop
    from rsi.progress import BOARD

    def alive() -> set[str]:  # the progress board is one per cluster, reused by every run
        return {a.actor_id for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000) if a.name != BOARD}

    before = alive()

    def broken_pass(*args: object, **kwargs: object) -> None:
        raise RuntimeError("corpus pass failed")

    monkeypatch.setattr(rsi.loop, "run_corpus_pass", broken_pass)
    cfg = _config(tiny_model, "vllm", tmp_path / "run")
    cfg.evals.enabled = False
    with pytest.raises(RuntimeError, match="corpus pass failed"):
        run_loop(cfg)
    deadline = time.monotonic() + 30
    while alive() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive() - before == set()


def test_an_iteration_without_pairs_keeps_the_version_and_the_run_goes_on(tiny_model: Path, tmp_path: Path,
                                                                          ray_local) -> None:
    """judging.min_margin=1.0 leaves no pair: each iteration is recorded as no_pairs, nothing is trained, the
    version stays v0, and a resume for more iterations continues after them. The finished run's folder is then
    refused to a fresh run, and to a resume whose config changes the corpus, with nothing of it lost."""
    import json

    from rsi.run_dir import RunDirError

    cfg = _config(tiny_model, "vllm", tmp_path / "run")
    cfg.evals.enabled, cfg.judging.min_margin = False, 1.0
    summaries = run_loop(cfg)
    assert [s.decision for s in summaries] == ["no_pairs", "no_pairs"]
    assert [s.kept_version for s in summaries] == [0, 0] and all(s.preferences == 0 for s in summaries)
    assert not (tmp_path / "run" / "checkpoints").exists()
    manifest = json.loads((tmp_path / "run" / "corpus" / "iter_001" / "manifest.json").read_text())
    assert manifest["gate"]["decision"] == "no_pairs"

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(RunDirError, match="already holds a run"):
        run_loop(cfg)
    cfg.run.resume, cfg.run.seed = True, 7
    with pytest.raises(RunDirError, match=r"run\.seed \(0 -> 7\)"):
        run_loop(cfg)
    assert {p: p.stat().st_mtime_ns for p in before} == before

    cfg.run.seed, cfg.loop.iterations = 0, 3
    resumed = run_loop(cfg)
    assert [s.iteration for s in resumed] == [0, 1, 2] and resumed[2].decision == "no_pairs"
