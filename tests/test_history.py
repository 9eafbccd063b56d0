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


@pytest.mark.parametrize("text,why", [('{"iteration": 0, "model_ver', "not JSON"), ("[1]", "JSON object"),
                                      ('{"iteration": 0}', "not an iteration record"), ("", "empty")])
def test_a_damaged_record_names_its_file_and_what_to_do(tmp_path: Path, text: str, why: str) -> None:
    from rsi.input_files import InputFileError

    (tmp_path / "iterations").mkdir()
    (tmp_path / "iterations" / "iter_000.json").write_text(text)
    with pytest.raises(InputFileError, match=rf"iter_000\.json.*{why}.*move it aside to redo iteration 0"):
        load_history(tmp_path)


def test_a_damaged_manifest_names_its_file(tmp_path: Path) -> None:
    from rsi.corpus.stream import read_manifest
    from rsi.input_files import InputFileError

    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"rows": {"perf')
    with pytest.raises(InputFileError, match="manifest.json"):
        read_manifest(tmp_path)
