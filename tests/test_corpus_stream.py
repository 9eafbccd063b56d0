"""CorpusWriter: parts committed whole, resume after SIGKILL at any point, exactly-once rows, streaming counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from rsi.corpus import counters
from rsi.corpus.ids import content_id
from rsi.corpus.stream import CorpusWriter, manifest_complete, read_manifest, read_table

pytestmark = pytest.mark.unit

SETS = 60


def set_rows(k: int) -> dict[str, list[dict]]:
    """Rows of one candidate set: 3 performances, 2 judgments, 1 preference, ids derived from the set."""
    task = f"t{k:04d}"
    msg = [{"role": "user", "content": f"task {k}"}]
    perf = [{"id": content_id("performance", task=task, i=i), "iteration": 0, "model_version": 0,
             "family": "programming", "step": "create_task", "chain_id": task, "domain": "d", "prompt": msg,
             "completion": "x" * (10 + i), "parse_status": "ok" if i else "invalid_json", "parse_error": "",
             "parsed": None, "procedural_score": None, "temperature": 0.9, "seed": i, "num_prompt_tokens": 3,
             "num_tokens": 4, "finish_reason": "stop"} for i in range(3)]
    judg = [{"id": content_id("judgment", task=task, r=r), "iteration": 0, "judge_model_version": 0, "level": 1,
             "family": "programming", "step": "rank_tasks", "chain_id": task, "candidate_ids": [p["id"] for p in perf],
             "presented_order": [0, 1, 2], "ranking": [0, 1, 2], "rationale": "", "parse_status": "ok",
             "parse_error": "", "raw_text": "{}", "prompt": msg, "temperature": 0.7, "seed": r, "weight": 1.0}
            for r in range(2)]
    pref = [{"id": content_id("preference", task=task), "iteration": 0, "family": "programming",
             "step": "create_task", "level": 1, "prompt": msg, "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}], "chosen_id": perf[0]["id"],
             "rejected_id": perf[1]["id"], "margin": 0.5, "weight": 0.5, "source_ids": [judg[0]["id"]]}]
    return {"performances": perf, "judgments": judg, "preferences": pref}


def write_all(out: Path, resume: bool, max_chains: int = 3) -> CorpusWriter:
    w = CorpusWriter(out, resume=resume, max_chains=max_chains)
    done = w.done_chain_ids()
    for k in range(SETS):
        if f"t{k:04d}" not in done:
            w.add_chain(f"t{k:04d}", set_rows(k))
    w.close(iteration=0)
    return w


def _ids(out: Path, table: str) -> list[str]:
    return read_table(out, table, columns=["id"]).column("id").to_pylist()


def test_uninterrupted_write_counts_and_manifest(tmp_path: Path) -> None:
    w = write_all(tmp_path, resume=False)
    assert manifest_complete(tmp_path)
    m = read_manifest(tmp_path)
    assert m["rows"] == {"performances": 3 * SETS, "judgments": 2 * SETS, "preferences": SETS}
    assert m["parts"] == SETS // 3 and m["chains"] == SETS and m["iteration"] == 0
    assert m["parse_rate"] == {"create_task": pytest.approx(2 / 3), "rank_tasks": 1.0}
    assert m["pairs_per_step"] == {"create_task": SETS}
    assert m["position_bias"] == {"rank_tasks/1": {"first_shown_wins": 1.0, "chance": pytest.approx(1 / 3),
                                                   "judgments": 2 * SETS}}
    assert m["mean_length"] == {"chosen": 1.0, "rejected": 1.0}
    assert len(set(_ids(tmp_path, "performances"))) == 3 * SETS
    assert w.rows() == m["rows"]


def test_a_set_is_written_once(tmp_path: Path) -> None:
    w = CorpusWriter(tmp_path, max_chains=1)
    assert w.add_chain("t0000", set_rows(0)) is True
    assert w.add_chain("t0000", set_rows(0)) is False  # retried set: ignored
    w.close()
    again = CorpusWriter(tmp_path, resume=True)
    assert again.done_chain_ids() == {"t0000"} and again.add_chain("t0000", set_rows(0)) is False
    again.close()
    assert len(_ids(tmp_path, "performances")) == 3


def test_fresh_writer_clears_a_previous_pass(tmp_path: Path) -> None:
    write_all(tmp_path, resume=False)
    w = CorpusWriter(tmp_path, resume=False)
    assert w.done_chain_ids() == set() and not manifest_complete(tmp_path)
    assert read_table(tmp_path, "performances").num_rows == 0  # empty, with the schema


def test_bad_row_fails_before_anything_is_committed(tmp_path: Path) -> None:
    w = CorpusWriter(tmp_path, max_chains=1)
    bad = set_rows(0)
    bad["preferences"][0]["level"] = "not a number"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)):
        w.add_chain("t0000", bad)
    assert CorpusWriter(tmp_path, resume=True).done_chain_ids() == set()
    assert read_table(tmp_path, "performances").num_rows == 0


def test_uncommitted_files_are_rolled_back_and_committed_ones_forward(tmp_path: Path) -> None:
    w = CorpusWriter(tmp_path, max_chains=1)
    w.add_chain("t0000", set_rows(0))
    # a crash after the commit record but before the renames: hide part 0's files again
    for table in ("performances", "judgments", "preferences"):
        final = tmp_path / table / "part-00000.parquet"
        final.rename(final.with_name(f".{final.name}.pending"))
    # and a stray, uncommitted part 1
    (tmp_path / "performances" / ".part-00001.parquet.pending").write_bytes(b"partial")
    (tmp_path / "performances" / "part-00001.parquet").write_bytes(b"never committed")
    assert read_table(tmp_path, "judgments").num_rows == 0  # readers never see pending files
    r = CorpusWriter(tmp_path, resume=True)
    assert r.done_chain_ids() == {"t0000"}
    assert sorted(p.name for p in (tmp_path / "performances").iterdir()) == ["part-00000.parquet"]
    assert read_table(tmp_path, "judgments").num_rows == 2


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_corpus_stream import write_all
write_all(Path({out!r}), resume=True, max_chains=2)
"""


def test_sigkill_at_any_point_then_resume_is_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "iter_000"
    code = _CHILD.format(tests=str(Path(__file__).parent), out=str(out))
    seen: set[str] = set()
    kills = 0
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        # let it import and write a little; the delays step across the run so kills land at many points
        deadline = time.monotonic() + 0.2 + 0.15 * attempt  # the first kill lands while it imports
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # what a reader sees after the kill: only whole, committed parts, no id twice
        ids = _ids(out, "performances") if (out / "performances").exists() else []
        assert len(ids) == len(set(ids))
        assert seen <= set(ids)  # nothing committed before is ever lost
        seen = set(ids)
        if manifest_complete(out):
            break
    assert kills >= 1
    if not manifest_complete(out):
        write_all(out, resume=True)
    reference = tmp_path / "reference"
    write_all(reference, resume=False)
    for table in ("performances", "judgments", "preferences"):
        got, want = _ids(out, table), _ids(reference, table)
        assert len(got) == len(set(got)) and sorted(got) == sorted(want)
    assert json.loads((out / "manifest.json").read_text())["rows"] == read_manifest(reference)["rows"]


def test_caller_tallies_commit_with_their_chain(tmp_path: Path) -> None:
    """What a caller left out of a chain (position-balance drops) is committed with the chain's rows, so a
    resumed pass knows it, and an uncommitted chain's tallies vanish with its rows."""
    w = CorpusWriter(tmp_path, max_chains=1)
    pref = set_rows(0)
    pref["preferences"][0] |= {"step": "rank_tasks", "level": 2, "chosen_first_shown": 1, "shown_items": 3}
    w.add_chain("t0000", pref, counters.dropped_for_balance({"rank_tasks": 2}))
    crashed = CorpusWriter(tmp_path, resume=True, max_chains=5)
    # buffered, never committed
    crashed.add_chain("t0001", set_rows(1), counters.dropped_for_balance({"rank_tasks": 7}))
    again = CorpusWriter(tmp_path, resume=True, max_chains=5)
    assert counters.balance_admitted(again.counters) == {"rank_tasks": {1: 1}}
    assert counters.balance_dropped(again.counters) == {"rank_tasks": 2}
    again.add_chain("t0001", set_rows(1), counters.dropped_for_balance({"rank_tasks": 1}))
    again.close()
    assert read_manifest(tmp_path)["balance_dropped"] == {"rank_tasks": 3}
