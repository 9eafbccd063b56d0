"""Every `rsi` verb refuses bad arguments and files before it works: a non-zero exit, one line on stderr that
names the flag or the file, and never a traceback.

The verbs run in-process through `rsi.cli.main`. Whatever would start real work (an engine, the sandbox, a model
build) is replaced by a stub that fails the test, so a check missing here shows as that failure, not as a
started evaluation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import run_rsi as run_in_process

from rsi.corpus.schema import PREFERENCES

pytestmark = pytest.mark.unit

FOLDER = object()  # put a folder where the file should be
DEEP = b"[" * 100_000  # past the JSON parser's recursion limit
# What can be wrong with any file a verb reads (a missing file is a file argument left out of `files`).
TEXT_FAULTS: dict[str, Any] = {"folder": FOLDER, "not_utf8": b"ok\n\xff\xfe\n", "empty": b""}
JSON_FAULTS: dict[str, Any] = {**TEXT_FAULTS, "deep": DEEP, "truncated": b'{"a": [1, 2'}


@dataclass
class Case:
    argv: list[str]  # "{t}" stands for the test's folder
    needle: str  # what stderr must name
    files: dict[str, Any] = field(default_factory=dict)  # path under {t} -> content (str, bytes, FOLDER, JSON)


def _put(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is FOLDER:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, pa.Table):
        pq.write_table(content, path)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))


def file_faults(name: str, argv: list[str], good: dict[str, Any], target: str,
                faults: dict[str, Any]) -> dict[str, Case]:
    """One case per fault of `target` (and one with it missing), the other files as in `good`."""
    cases = {f"{name}-missing": Case(argv, "{t}/" + target, {k: v for k, v in good.items() if k != target})}
    for fault, content in faults.items():
        cases[f"{name}-{fault}"] = Case(argv, "{t}/" + target, {**good, target: content})
    return cases


def flag_faults(name: str, argv: list[str], good: dict[str, Any], flag: str, values: list[str]) -> dict[str, Case]:
    return {f"{name}-{flag}={v}": Case([*argv, flag, v], flag, good) for v in values}


NUMBER = ["nan", "-1", "0", "1e308", "inf", "ten"]
INTEGER = ["nan", "-1", "0", str(10**30), "1.5"]

# ---- rsi sandbox run
PROGRAM = "def f():\n    return 1\n"
SANDBOX_FILES = {"p.py": PROGRAM, "t.py": "def check(c):\n    assert c() == 1\n", "h.py": "X = 1\n",
                 "c.json": [{"args": [], "expected": 1}]}
SANDBOX = ["sandbox", "run", "--program", "{t}/p.py", "--tests", "{t}/t.py", "--entry-point", "f", "--no-canary"]
SANDBOX_JSON = ["sandbox", "run", "--program", "{t}/p.py", "--tests", "{t}/c.json", "--format", "json",
                "--entry-point", "f", "--no-canary"]
CASES: dict[str, Case] = {
    **file_faults("sandbox-program", SANDBOX, SANDBOX_FILES, "p.py", TEXT_FAULTS),
    **file_faults("sandbox-tests", SANDBOX, SANDBOX_FILES, "t.py", TEXT_FAULTS),
    **file_faults("sandbox-helpers", [*SANDBOX, "--helpers", "{t}/h.py"], SANDBOX_FILES, "h.py", TEXT_FAULTS),
    **file_faults("sandbox-json-tests", SANDBOX_JSON, SANDBOX_FILES, "c.json", {
        **JSON_FAULTS, "a_string": '"x"', "an_object_without_cases": {}, "a_number_case": [1],
        "args_not_a_list": [{"args": 5, "expected": 1}], "kwargs_not_an_object": [{"kwargs": [], "expected": 1}],
        "rel_tol_not_a_number": [{"expected": 1.0, "rel_tol": "close"}], "no_expected": [{"args": []}],
        "no_cases": []}),
    **flag_faults("sandbox", SANDBOX, SANDBOX_FILES, "--timeout", NUMBER),
    **flag_faults("sandbox", SANDBOX, SANDBOX_FILES, "--memory-mb", INTEGER),
    **flag_faults("sandbox", SANDBOX, SANDBOX_FILES, "--uid-base", INTEGER),
}

# ---- rsi eval run: the model is missing too, and checked last, so no case can get as far as an engine
EVAL_RUN = ["eval", "run", "--model", "{t}/no-model", "--tasks", "judge_accuracy", "--out", "{t}/out"]
PAIR = {"id": "p", "task_id": "t/0", "prompt": "def f():", "good": "def f(): return 1", "bad": "def f(): return 2"}
CASES |= {
    **file_faults("eval-run-data", [*EVAL_RUN, "--data", "judge_accuracy={t}/d.jsonl"], {"d.jsonl": PAIR},
                  "d.jsonl", {**JSON_FAULTS, "a_list_line": [PAIR], "good_not_a_string": {**PAIR, "good": 5}}),
    "eval-run-data-humaneval-no-test": Case([*EVAL_RUN, "--data", "humaneval={t}/d.jsonl"], "{t}/d.jsonl",
                                            {"d.jsonl": {"task_id": "t/0", "prompt": "", "entry_point": "f"}}),
    "eval-run-data-format-following": Case([*EVAL_RUN, "--data", "format_following={t}/d.jsonl"], "--data",
                                           {"d.jsonl": PAIR}),
    **flag_faults("eval-run", EVAL_RUN, {}, "--limit", INTEGER),
    "eval-run-out-a-file": Case(EVAL_RUN, "--out", {"out": "x"}),
    "eval-run-out-under-a-file": Case([*EVAL_RUN, "--out", "{t}/f/out"], "--out", {"f": "x"}),
    "eval-run-out-not-empty": Case(EVAL_RUN, "--out", {"out/x": "x"}),
    "eval-run-families": Case([*EVAL_RUN, "--families", "nope"], "--families"),
    "eval-run-dtype": Case([*EVAL_RUN, "--dtype", "float8"], "--dtype"),
    "eval-run-model": Case(EVAL_RUN, "--model"),
}

# ---- rsi eval compare
METRICS = {"t": {"metric": "accuracy", "value": 1.0, "ci95": [0.2, 1.0], "n": 1}}
ITEM = {"id": "x", "correct": 1}
EVAL_DIRS = {"a/metrics.json": METRICS, "a/t.jsonl": ITEM, "b/metrics.json": METRICS, "b/t.jsonl": ITEM}
COMPARE = ["eval", "compare", "{t}/a", "{t}/b"]
CASES |= {
    **file_faults("compare-metrics", COMPARE, EVAL_DIRS, "a/metrics.json",
                  {**JSON_FAULTS, "a_list": [METRICS], "a_task_not_an_object": {"t": 3}}),
    **file_faults("compare-items", COMPARE, EVAL_DIRS, "b/t.jsonl", {
        **JSON_FAULTS, "a_list_line": [ITEM], "correct_yes": {"id": "x", "correct": "yes"},
        "correct_2": {"id": "x", "correct": 2}, "id_a_list": {"id": [1], "correct": 1},
        "copies_example_text": {**ITEM, "copies_example": "many"}, "mutation_a_list": {**ITEM, "mutation": [1]}}),
    "compare-dir-a-file": Case(COMPARE, "{t}/a", {"a": "x", "b/metrics.json": METRICS, "b/t.jsonl": ITEM}),
    "compare-half": Case([*COMPARE, "--half", "both"], "--half", EVAL_DIRS),
}

# ---- rsi eval humaneval
PROBLEM = {"task_id": "t/0", "prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n",
           "entry_point": "f"}
SAMPLE = {"task_id": "t/0", "completion": "    return 1\n"}
HE_FILES = {"s.jsonl": SAMPLE, "pr.jsonl": PROBLEM}
HUMANEVAL = ["eval", "humaneval", "--samples", "{t}/s.jsonl", "--problems", "{t}/pr.jsonl"]
CASES |= {
    **file_faults("humaneval-samples", HUMANEVAL, HE_FILES, "s.jsonl", {
        **JSON_FAULTS, "a_list_line": [SAMPLE], "completion_a_number": {**SAMPLE, "completion": 5},
        "no_task_id": {"completion": ""}, "an_unknown_task": {**SAMPLE, "task_id": "t/9"}}),
    **file_faults("humaneval-problems", HUMANEVAL, HE_FILES, "pr.jsonl", {
        **JSON_FAULTS, "a_list_line": [PROBLEM], "entry_point_a_number": {**PROBLEM, "entry_point": 5}}),
    "humaneval-results-a-folder": Case(HUMANEVAL, "{t}/s.jsonl_results.jsonl",
                                       {**HE_FILES, "s.jsonl_results.jsonl": FOLDER}),
    **flag_faults("humaneval", HUMANEVAL, HE_FILES, "--timeout", NUMBER),
    **flag_faults("humaneval", HUMANEVAL, HE_FILES, "--slots", INTEGER),
    **flag_faults("humaneval", HUMANEVAL, HE_FILES, "--uid-base", INTEGER),
    **flag_faults("humaneval", HUMANEVAL, HE_FILES, "--k", [*INTEGER, "1,x", ","]),
}

# ---- rsi report
REPORT = ["report", "{t}/run"]
CASES |= {
    **file_faults("report-summary", REPORT, {"run/summary.json": []}, "run/summary.json",
                  {**JSON_FAULTS, "an_object": {"iteration": 0}}),
    "report-out-a-file": Case(REPORT, "{t}/run/report", {"run/summary.json": [], "run/report": "x"}),
    "report-no-run-dir": Case(REPORT, "{t}/run"),
}


# ---- rsi corpus stats | export
def _preferences(**columns: pa.Array) -> pa.Table:
    """One preference row of the real schema, with `columns` replaced (to give one the wrong type)."""
    msg = [{"role": "user", "content": "c"}]
    row = {"id": "p", "iteration": 0, "family": "programming", "step": "solve", "level": 1, "prompt": msg,
           "chosen": msg, "rejected": msg, "chosen_id": "a", "rejected_id": "b", "margin": 0.5, "weight": 0.5,
           "source_ids": [], "chosen_first_shown": 0, "shown_items": 2}
    table = pa.Table.from_pylist([row], schema=PREFERENCES)
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


ITER = "run/corpus/iter_000"
PARTS = f"{ITER}/preferences/part-00000.parquet"
CORPUS = {PARTS: _preferences()}
STATS = ["corpus", "stats", "{t}/run"]
EXPORT = ["corpus", "export", "{t}/run", "{t}/out"]
CASES |= {
    **{k: v for k, v in file_faults("stats-manifest", STATS, CORPUS, f"{ITER}/manifest.json", {
        **JSON_FAULTS, "a_list": [], "balance_dropped_a_list": {"balance_dropped": []},
        "balance_dropped_text": {"balance_dropped": {"solve": "x"}}}).items() if not k.endswith("-missing")},
    "stats-parquet-garbage": Case(STATS, PARTS, {PARTS: b"garbage"}),
    "stats-parquet-level-text": Case(STATS, f"{ITER}/preferences", {PARTS: _preferences(level=pa.array(["x"]))}),
    "stats-no-dir": Case(STATS, "{t}/run"),
    "export-parquet-garbage": Case(EXPORT, PARTS, {PARTS: b"garbage"}),
    "export-parquet-margin-text": Case(EXPORT, PARTS, {PARTS: _preferences(margin=pa.array(["high"]))}),
    "export-out-a-file": Case(EXPORT, "{t}/out", {**CORPUS, "out": "x"}),
    "export-out-under-a-file": Case([*EXPORT[:3], "{t}/f/out"], "{t}/f/out", {**CORPUS, "f": "x"}),
    "export-no-dir": Case(EXPORT, "{t}/run"),
    **flag_faults("export", EXPORT, CORPUS, "--min-margin", ["nan", "-1", "1e308", "inf", "x"]),
    **flag_faults("export", EXPORT, CORPUS, "--level", INTEGER),
    "export-format": Case([*EXPORT, "--format", "csv"], "--format", CORPUS),
}

# ---- rsi model build, rsi run, rsi itself
CASES |= {
    "model-out-a-file": Case(["model", "build", "tiny", "--out", "{t}/m"], "{t}/m", {"m": "x"}),
    "model-out-under-a-file": Case(["model", "build", "tiny", "--out", "{t}/f/m"], "{t}/f/m", {"f": "x"}),
    "model-out-not-ours": Case(["model", "build", "tiny", "--out", "{t}/m"], "{t}/m", {"m/notes.txt": "x"}),
    "model-stamp-a-folder": Case(["model", "build", "tiny", "--out", "{t}/m"], "{t}/m", {"m/rsi_tiny.json": FOLDER}),
    "model-name": Case(["model", "build", "gpt5"], "name"),
    "run-unreadable-override": Case(["run", "run.dir={t}/a b(c"], "run.dir"),
    "rsi-unknown-verb": Case(["frobnicate"], "frobnicate"),
}


@pytest.fixture(autouse=True)
def _no_real_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work a refused input must never reach fails the test loudly."""
    import rsi.evals.cli
    import rsi.evals.humaneval
    import rsi.models.smollm2
    import rsi.models.tiny
    import rsi.sandbox.cli

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input reached real work")

    monkeypatch.setattr(rsi.evals.cli, "_evaluate_with_engine", started)
    monkeypatch.setattr(rsi.sandbox.cli, "Sandbox", started)
    monkeypatch.setattr(rsi.evals.humaneval, "Sandbox", started)
    # A model build reads its stamp right after checking its folder, and builds after that.
    monkeypatch.setattr(rsi.models.tiny, "read_stamp", started)
    monkeypatch.setattr(rsi.models.smollm2, "read_stamp", started)


def run_rsi(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    code, _, err = run_in_process(argv, capsys)
    return code, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_naming_it(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    for rel, content in case.files.items():
        _put(tmp_path / rel, content)
    code, err = run_rsi([a.replace("{t}", str(tmp_path)) for a in case.argv], capsys)
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert case.needle.replace("{t}", str(tmp_path)) in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_read_only_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder the user may not write in (the `under a file` cases above cover root, whom no mode stops)."""
    if os.geteuid() == 0:
        pytest.skip("root writes through any mode bits")
    (tmp_path / "ro").mkdir(mode=0o500)
    _put(tmp_path / PARTS, _preferences())
    argv = ["corpus", "export", str(tmp_path / "run"), str(tmp_path / "ro" / "out")]
    code, err = run_rsi(argv, capsys)
    assert code == 2 and str(tmp_path / "ro" / "out") in err and "Traceback" not in err


def test_a_stamp_too_deep_to_read_is_rebuilt(tmp_path: Path) -> None:
    """A build stamp nested past the parser's depth reads as no stamp: the model is built again."""
    from rsi.models.folders import read_stamp

    (tmp_path / "rsi_tiny.json").write_bytes(DEEP)
    assert read_stamp(tmp_path / "rsi_tiny.json") is None


def test_good_input_passes_the_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stand-in inputs above are fine as they are: each case fails on its own fault alone."""
    for rel, content in {**EVAL_DIRS, **CORPUS}.items():
        _put(tmp_path / rel, content)
    assert run_rsi(["eval", "compare", f"{tmp_path}/a", f"{tmp_path}/b", "--json"], capsys)[0] == 0
    assert run_rsi(["corpus", "stats", f"{tmp_path}/run", "--json"], capsys)[0] == 0
    assert run_rsi(["corpus", "export", f"{tmp_path}/run", f"{tmp_path}/out"], capsys)[0] == 0
    argv = ["eval", "run", "--model", f"{tmp_path}/no-model", "--tasks", "judge_accuracy", "--out", f"{tmp_path}/o"]
    _put(tmp_path / "d.jsonl", PAIR)
    code, err = run_rsi([*argv, "--data", f"judge_accuracy={tmp_path}/d.jsonl", "--limit", "3"], capsys)
    assert code == 2 and "--model" in err  # refused for the model alone
