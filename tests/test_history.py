"""The run history: per-iteration records a resumed run continues from."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsi.history import IterationSummary, load_history, record_iteration

pytestmark = pytest.mark.unit


def test_history_is_read_back_up_to_the_first_gap(tmp_path: Path) -> None:
    history: list[IterationSummary] = []
    for it in range(2):
        record_iteration(tmp_path, history, IterationSummary(
            iteration=it, model_version=0, new_version=it + 1, kept_version=0, kept_checkpoint="/base",
            decision="rejected", checkpoint=f"/c/v{it + 1}", evals={"gate": {"humaneval": {"delta": -0.1}}}))
    (tmp_path / "iterations" / "iter_005.json").write_text("{}")  # not contiguous: ignored
    again = load_history(tmp_path)
    assert again == history and [s.decision for s in again] == ["rejected", "rejected"]
