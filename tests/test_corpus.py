"""Corpus tables: content ids, schemas enforced at write, and loading as a DPO dataset."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from rsi.corpus.ids import content_id, derived_seed
from rsi.corpus.stream import CorpusWriter, read_table

pytestmark = pytest.mark.unit


def _pref(i: int) -> dict:
    return {
        "id": content_id("preference", i=i), "iteration": 0, "family": "programming", "step": "create_task",
        "level": 1, "prompt": [{"role": "user", "content": f"task {i}"}],
        "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}],
        "chosen_id": "c", "rejected_id": "r", "margin": 0.5, "weight": 1.0, "source_ids": ["j1", "j2"],
    }


def test_ids_are_content_hashes() -> None:
    assert content_id("x", a=1, b=[1, 2]) == content_id("x", b=[1, 2], a=1)
    assert content_id("x", a=1) != content_id("x", a=2) != content_id("y", a=1)
    assert derived_seed("t", 1) == derived_seed("t", 1) != derived_seed("t", 2)
    assert 0 <= derived_seed("t", 3) < 2**31


def test_bad_row_fails_and_writes_nothing(tmp_path: Path) -> None:
    bad = _pref(0) | {"level": "not a number"}
    writer = CorpusWriter(tmp_path, max_chains=1)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)):
        writer.add_chain("c0", {"preferences": [bad]})
    assert not (tmp_path / "preferences").exists() or not list((tmp_path / "preferences").iterdir())
    assert read_table(tmp_path, "preferences").num_rows == 0


def test_preferences_load_as_conversational_dpo_dataset(tmp_path: Path) -> None:
    import datasets

    writer = CorpusWriter(tmp_path)
    writer.add_chain("c0", {"preferences": [_pref(i) for i in range(3)]})
    writer.close(iteration=0)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "preferences" / "*.parquet"), split="train")
    assert ds[0]["prompt"] == [{"role": "user", "content": "task 0"}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "good"}]
