"""`rsi corpus stats` and `rsi corpus export`: figures read back from a written corpus, DPO-ready export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_corpus_stream import set_rows

from rsi.cli import main as rsi_main
from rsi.corpus.export import export_preferences
from rsi.corpus.stats import corpus_stats, format_stats
from rsi.corpus.stream import CorpusWriter

pytestmark = pytest.mark.unit


def _run_dir(tmp_path: Path, iterations: int = 2) -> Path:
    for it in range(iterations):
        w = CorpusWriter(tmp_path / "corpus" / f"iter_{it:03d}", max_chains=2)
        for k in range(4):
            rows = set_rows(k + 10 * it)
            for i, p in enumerate(rows["performances"]):
                p["procedural_score"] = float(i)  # candidate 2 best by execution
            # judgment 0 agrees with execution (2 > 1 > 0), judgment 1 inverts it; both put the first shown first
            rows["judgments"][0].update(ranking=[2, 1, 0], presented_order=[2, 0, 1])
            rows["judgments"][1].update(ranking=[0, 1, 2], presented_order=[0, 2, 1])
            rows["preferences"][0]["margin"] = 0.2 if k % 2 else 0.8
            w.add_chain(f"t{it}{k}", rows)
        w.close(iteration=it)
    return tmp_path


def test_stats_per_iteration(tmp_path: Path) -> None:
    stats = corpus_stats(_run_dir(tmp_path))
    assert [s["iteration"] for s in stats] == ["iter_000", "iter_001"]
    s = stats[0]
    assert s["complete"]
    assert s["rows"]["performances"] == {"programming/create_task": 12}
    assert s["rows"]["judgments"] == {"programming/rank_tasks/1": 8}
    assert s["parse_rate"]["create_task"] == pytest.approx(2 / 3)
    bias = s["position_bias"]["rank_tasks/1"]
    assert bias["first_shown_wins"] == 1.0 and bias["chance"] == pytest.approx(1 / 3)
    acc = s["judge_accuracy"]["rank_tasks"]
    assert acc["pairwise_accuracy"] == 0.5 and acc["kendall_tau"] == 0.0 and acc["judgments"] == 8
    assert s["pairs_per_step"] == {"create_task": 4}
    assert s["mean_length"] == {"chosen": 1.0, "rejected": 1.0}
    text = format_stats(stats)
    assert "first-shown wins" in text and "judge vs execution" in text


def test_export_trl_loads_as_dpo_dataset(tmp_path: Path) -> None:
    import datasets

    run = _run_dir(tmp_path / "run")
    n = export_preferences(run, tmp_path / "out", "trl", min_margin=0.5)
    assert n == 4  # half the pairs fall under the margin threshold
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "*.parquet"), split="train")
    assert ds.num_rows == 4 and {"prompt", "chosen", "rejected", "weight"} <= set(ds.column_names)
    assert ds[0]["chosen"][0]["role"] == "assistant"


def test_cli_stats_and_export(tmp_path: Path, capsys) -> None:
    run = _run_dir(tmp_path / "run", iterations=1)
    assert rsi_main(["corpus", "stats", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pairs_per_step"] == {"create_task": 4}
    assert rsi_main(["corpus", "export", str(run), "--format", "jsonl", str(tmp_path / "x")]) == 0
    lines = [json.loads(x) for f in (tmp_path / "x").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(lines) == 4
    assert rsi_main(["corpus", "stats", str(tmp_path / "nothing")]) == 2
