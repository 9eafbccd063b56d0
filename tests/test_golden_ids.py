"""The corpus a seed and a config produce does not change under refactoring: two corpus passes on the tiny
model (every family listwise; pairwise judging three levels deep) must write exactly the row ids recorded in
tests/data/golden_ids.json.

Ids are content hashes of a row's inputs (prompt, sampling seed, model version, candidate ids), and the
preference ids name the chosen and rejected rows, so equal ids mean the same prompts, the same judgments and the
same decisions. Chains run one at a time and the position balance is off, so nothing depends on scheduling.

When a change is meant to alter the corpus, record anew: `RSI_RECORD_GOLDEN=1 pytest tests/test_golden_ids.py`,
and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rsi.config import RsiConfig
from rsi.corpus.stream import read_table

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # two corpus passes: minutes
GOLDEN = Path(__file__).parent / "data" / "golden_ids.json"
TABLES = ("performances", "judgments", "preferences")

# family → sizes; judging overrides per pass. Small enough for minutes on two cores, big enough that every
# step, level and pair kind appears.
PASSES: dict[str, tuple[dict[str, dict], dict]] = {
    "listwise": ({
        "programming": {"seeds": ["parsing logs", "scheduling"], "candidates": 3, "keep": 1, "evals": 2,
                        "solutions": 2, "max_tokens": 1400},
        "python_output": {"seeds": ["lists"], "candidates": 3, "max_tokens": 64},
        "open_ended": {"seeds": ["a dilemma", "another one"], "candidates": 3, "max_tokens": 48},
    }, {"max_tokens": 96, "rationale_chars": 24}),
    "pairwise": ({
        "open_ended": {"seeds": ["a dilemma", "a choice"], "candidates": 2, "max_tokens": 32},
    }, {"mode": "pairwise", "meta_depth": 3, "meta_rankings_per_set": 2, "max_tokens": 200,
        "rationale_chars": 24}),
}


def family_config(name: str, sizes: dict):
    from rsi.tasks import get_family

    return get_family(name).config(**sizes)


def corpus_ids(engine, sandbox, out: Path, name: str) -> dict[str, list[str]]:
    from rsi.pipeline.corpus_pass import run_corpus_pass

    families, judging = PASSES[name]
    cfg = RsiConfig(tasks={f: family_config(f, sizes) for f, sizes in families.items()})
    cfg.loop.chains_in_flight = 1
    cfg.judging.position_balance = -1.0
    for key, value in judging.items():
        setattr(cfg.judging, key, type(getattr(cfg.judging, key))(value))
    run_corpus_pass(cfg, engine, 0, out, model_version=0, judge=engine, sandbox=sandbox)
    return {t: sorted(read_table(out, t, ["id"]).column("id").to_pylist()) for t in TABLES}


def test_corpus_ids_match_the_recorded_ones(engine, sandbox, tmp_path: Path) -> None:
    got = {name: corpus_ids(engine, sandbox, tmp_path / name, name) for name in PASSES}
    if os.environ.get("RSI_RECORD_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    for name in PASSES:
        for table in TABLES:
            assert want[name][table], f"{name}/{table}: the recording holds no rows; nothing would be compared"
            assert got[name][table] == want[name][table], f"{name}/{table} ids differ from the recording"
