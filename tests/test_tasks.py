"""Task families: procedural checks on known programs, then each family end to end on the tiny model."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from rsi.config import FamilyConfig, RsiConfig
from rsi.corpus.stream import read_table
from rsi.tasks import get_family
from rsi.tasks.mutants import make_mutants
from rsi.tasks.programming import ProgrammingConfig
from rsi.tasks.python_output import PythonOutputConfig

PROGRAMMING_STEPS = {"create_task", "rank_tasks", "rank_task_rankings", "create_eval", "rank_evals",
                     "rank_eval_rankings", "solve", "rank_solutions", "rank_solution_rankings"}


def _item(step: str, iid: str, parsed, parent: str | None = None, status: str = "ok") -> dict:
    return {"id": iid, "step": step, "parent_id": parent, "set_id": f"{step}-{parent}", "parsed": parsed,
            "parse_status": status, "completion": "", "kept": True, "procedural_score": None,
            "procedural_detail": None}


def _runner(pool):
    return lambda jobs: [v.to_dict() for v in pool.run(jobs)]


@pytest.mark.unit
def test_mutants_compile_and_differ() -> None:
    code = ("def f(xs, k):\n    out = []\n    for x in xs:\n        if x > k and x != 0:\n"
            "            out.append(x + 1)\n        else:\n            out.append(x)\n    return out\n")
    mutants = make_mutants(code)
    assert {kind for kind, _ in mutants} >= {"flip", "off_by_one", "drop_branch", "swap_boolop"}
    for _, m in mutants:
        compile(m, "<m>", "exec")
        assert m != code
    assert make_mutants("not python (") == []


@pytest.mark.ray
def test_programming_execution_scores_suites_and_solutions(sandbox) -> None:
    """A correct and a buggy solution against a strong, a weak and a wrong suite."""
    from rsi.tasks.programming import execute

    task = _item("create_task", "t", {"entry_point": "clamp", "signature": "def clamp(x, lo, hi):"})
    good = "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n"
    buggy = "def clamp(x, lo, hi):\n    return max(x, lo)\n"
    strong = {"cases": [{"args": [5, 0, 10], "expected": 5}, {"args": [-3, 0, 10], "expected": 0},
                        {"args": [30, 0, 10], "expected": 10}, {"args": [0, 0, 10], "expected": 0},
                        {"args": [10, 0, 10], "expected": 10}]}
    weak = {"cases": [{"args": [5, 0, 10], "expected": 5}]}
    # properties alone catch the bug: the result must lie within [lo, hi]
    props = {"cases": [{"args": [5, 0, 10], "expected": 5}, {"args": [30, 0, 10], "expected": 10}],
             "properties": ["args[1] <= result <= args[2]"]}
    wrong = {"cases": [{"args": [5, 0, 10], "expected": 6}]}
    chain = {"seed": "numbers", "judgments": [], "items": [
        task, _item("solve", "s_good", good, "t"), _item("solve", "s_bug", buggy, "t"),
        _item("solve", "s_bad", None, "t", status="syntax_error"),
        _item("create_eval", "e_strong", strong, "t"), _item("create_eval", "e_weak", weak, "t"),
        _item("create_eval", "e_wrong", wrong, "t"), _item("create_eval", "e_props", props, "t")]}
    execute(chain, _runner(sandbox))
    score = {i["id"]: i["procedural_score"] for i in chain["items"] if i["step"] != "create_task"}
    assert score["e_strong"] > score["e_weak"] > score["e_wrong"] == 0.0
    assert score["s_good"] == 1.0 > score["s_bug"] and score["s_bad"] == 0.0
    assert score["e_props"] > score["e_weak"]
    assert chain["items"][-1]["procedural_detail"]["column"] == [1.0, 0.5]  # bug fails one case + its property
    assert task["procedural_detail"]["best_solution"] == "s_good"
    assert len(task["procedural_detail"]["pass_matrix"]) == 2  # unparsed solutions are not run


@pytest.mark.ray
def test_python_output_learnability(sandbox) -> None:
    from rsi.tasks.python_output import run_programs, score_predictions

    programs = {
        "p_ok": "def solution():\n    return sorted([3, 1, 2])[::-1]\n",
        "p_nondet": "import time\n\ndef solution():\n    return time.perf_counter_ns()\n",
        "p_err": "def solution():\n    return 1 / 0\n",
    }
    chain = {"seed": "lists", "judgments": [],
             "items": [_item("write_program", k, v) for k, v in programs.items()]}
    run_programs(chain, _runner(sandbox))
    kept = {i["id"] for i in chain["items"] if i["kept"]}
    assert kept == {"p_ok"}
    preds = [[3, 2, 1], [3, 2, 1], [1, 2, 3], "nonsense"]
    chain["items"] += [_item("predict_output", f"q{k}", {"prediction": p}, "p_ok") for k, p in enumerate(preds)]
    score_predictions(chain, _runner(sandbox))
    by_id = {i["id"]: i for i in chain["items"]}
    assert [by_id[f"q{k}"]["procedural_score"] for k in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert by_id["p_ok"]["procedural_score"] == pytest.approx(0.5)  # 1 - solve rate
    assert by_id["p_nondet"]["procedural_score"] == 0.0 and by_id["p_err"]["procedural_score"] == 0.0


def _pass(engine, sandbox, tmp_path: Path, tasks: dict[str, FamilyConfig], **judging) -> Path:
    from rsi.pipeline.corpus_pass import run_corpus_pass

    cfg = RsiConfig(tasks=tasks)
    cfg.judging.max_tokens, cfg.judging.rationale_chars = 96, 24
    for key, value in judging.items():
        setattr(cfg.judging, key, value)
    out = tmp_path / "iter_000"
    run_corpus_pass(cfg, engine, 0, out, model_version=0, judge=engine, sandbox=sandbox)
    return out


def _steps(out: Path, table: str) -> set[str]:
    return set(read_table(out, table).column("step").to_pylist())


@pytest.mark.ray
def test_programming_writes_all_nine_steps(engine, sandbox, tmp_path: Path) -> None:
    # the tiny model's random text needs room to close its JSON: ~1 token per character
    fam = ProgrammingConfig(seeds=["parsing logs", "scheduling"], candidates=3, keep=1, evals=2, solutions=2,
                            max_tokens=1400)
    out = _pass(engine, sandbox, tmp_path, {"programming": fam})
    assert _steps(out, "performances") | _steps(out, "judgments") == PROGRAMMING_STEPS
    perf = read_table(out, "performances").to_pylist()
    assert all(r["template_hash"] and r["set_id"] for r in perf)
    assert {r["step"] for r in perf if r["parent_id"]} == {"create_eval", "solve"}
    assert all(r["procedural_score"] is not None for r in perf if r["step"] in ("create_eval", "solve"))
    assert _steps(out, "preferences") >= {"create_task", "rank_tasks", "create_eval", "rank_evals", "solve",
                                          "rank_solutions"}


@pytest.mark.ray
def test_python_output_family_on_tiny(engine, sandbox, tmp_path: Path) -> None:
    """The tiny model's programs never run, so no predictions are asked: every program scores 0 and the
    judges' ranking decides its pairs."""
    out = _pass(engine, sandbox, tmp_path, {"python_output": PythonOutputConfig(seeds=["lists"], candidates=3,
                                                                                 max_tokens=64)})
    perf = read_table(out, "performances").to_pylist()
    assert {r["step"] for r in perf} == {"write_program"}
    assert all(r["procedural_score"] == 0.0 and not r["kept"] for r in perf)
    assert _steps(out, "judgments") == {"rank_programs", "rank_program_rankings"}
    assert "write_program" in _steps(out, "preferences")


@pytest.mark.ray
def test_open_ended_family_on_tiny(engine, tmp_path: Path) -> None:
    out = _pass(engine, None, tmp_path, {"open_ended": FamilyConfig(seeds=["a dilemma", "another one"],
                                                                     candidates=3, max_tokens=48)})
    assert _steps(out, "performances") == {"respond"}
    assert _steps(out, "judgments") == {"rank_responses", "rank_response_rankings"}
    assert _steps(out, "preferences") == {"respond", "rank_responses"}


@pytest.mark.ray
def test_readme_family_example_runs(engine, tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "docs" / "task-families.md").read_text()
    code = re.search(r"<!-- family-example -->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.splitlines()) <= 35
    module = types.ModuleType("readme_family")  # not importable by workers: cloudpickle ships it by value
    exec(compile(code, "docs/task-families.md", "exec"), module.__dict__)
    assert get_family("explain") is module.EXPLAIN
    out = _pass(engine, None, tmp_path, {"explain": FamilyConfig(seeds=["recursion"], candidates=3, max_tokens=32)})
    assert _steps(out, "performances") == {"explain"}
    assert _steps(out, "judgments") == {"rank_explanations", "rank_explanation_rankings"}


@pytest.mark.ray
def test_families_stream_together(engine, sandbox, tmp_path: Path) -> None:
    out = _pass(engine, sandbox, tmp_path, {
        "open_ended": FamilyConfig(seeds=["a dilemma"], candidates=2, max_tokens=24),
        "python_output": PythonOutputConfig(seeds=["lists", "strings"], candidates=2, max_tokens=24)})
    perf = read_table(out, "performances").to_pylist()
    assert {(r["family"], r["step"]) for r in perf} == {("open_ended", "respond"), ("python_output", "write_program")}
    assert len({r["chain_id"] for r in perf}) == 3


@pytest.mark.ray
def test_pairwise_judging_and_three_levels(engine, tmp_path: Path) -> None:
    """judging.mode=pairwise: every pair of a set shown both ways; judging.meta_depth=3: the meta-rankings are
    ranked in turn, and pairs come from every level. Three candidates at level 1 would make six pairwise
    judgments, more than the tiny model ranks validly at level 2 (schemas enumerate permutations only up to
    five items), so the set has two; the grouping of pairwise judgments by question is tested in
    test_judging_decide."""
    out = _pass(engine, None, tmp_path, {"open_ended": FamilyConfig(seeds=["a dilemma", "a choice"], candidates=2,
                                                                     max_tokens=32)},
                mode="pairwise", meta_depth=3, meta_rankings_per_set=2, max_tokens=200)
    from rsi.judging.config import JudgingConfig
    from rsi.judging.decide import decide_rows

    judgments = read_table(out, "judgments").to_pylist()
    performances = {r["id"]: r for r in read_table(out, "performances").to_pylist()}
    assert {j["level"] for j in judgments} == {1, 2, 3}
    weighed = set()
    for set_id in {j["set_id"] for j in judgments if j["level"] == 1}:
        level1 = [j for j in judgments if j["set_id"] == set_id]
        assert sorted(tuple(j["presented_order"]) for j in level1) == [(0, 1), (1, 0)]  # both orders
        level2 = [j for j in judgments if j["level"] == 2 and j["candidate_ids"] == [x["id"] for x in level1]]
        level3 = [j for j in judgments if j["level"] == 3 and j["candidate_ids"] == [x["id"] for x in level2]]
        assert len(level2) == len(level3) == 2
        assert all("Judgements of level 1" in j["prompt"][1]["content"] for j in level3)
        # Each stored trust weight is the one deciding this set from its stored rows gives (the pass's overrides
        # are not knobs of the decision): consensus at every level, the meta-judges' verdict flowing down.
        candidates = [performances[c] for c in level1[0]["candidate_ids"]]
        decision = decide_rows(candidates, [level1, level2, level3], JudgingConfig())
        for level, weights in zip((level1, level2, level3), decision.weights):
            assert [j["weight"] for j in level] == pytest.approx(weights)
            weighed |= {j["id"] for j in level}
    assert weighed == {j["id"] for j in judgments}
    assert all(j["weight"] == 0.0 for j in judgments if j["ranking"] is None)  # an invalid answer has no say
    j_by_id = {j["id"]: j for j in judgments}
    prefs = read_table(out, "preferences").to_pylist()
    assert {p["level"] for p in prefs} >= {2, 3}  # judgement pairs from the meta levels
    for pref in prefs:
        if pref["level"] >= 2:
            good, bad = j_by_id[pref["chosen_id"]], j_by_id[pref["rejected_id"]]
            assert good["set_id"] == bad["set_id"] and good["level"] == pref["level"] - 1
            assert sorted(good["presented_order"]) == sorted(bad["presented_order"])
            assert pref["shown_items"] == len(good["presented_order"])
            # the position the chosen answer picks in the pair's prompt, which is the worse judgment's
            assert pref["prompt"] == bad["prompt"]
            assert pref["chosen_first_shown"] == bad["presented_order"].index(good["ranking"][0])


@pytest.mark.ray
def test_meta_depth_one_judges_performances_only(engine, tmp_path: Path) -> None:
    out = _pass(engine, None, tmp_path, {"open_ended": FamilyConfig(seeds=["a dilemma"], candidates=3,
                                                                     max_tokens=32)}, meta_depth=1, min_margin=0.0)
    judgments = read_table(out, "judgments").to_pylist()
    assert {j["level"] for j in judgments} == {1}
    # min_margin=0: the set yields its performance pair however close the judges' scores, and no judgement pair
    prefs = read_table(out, "preferences").to_pylist()
    assert prefs and {(p["step"], p["level"]) for p in prefs} == {("respond", 1)}
    assert all(set(p["source_ids"]) <= {j["id"] for j in judgments} for p in prefs)
