"""The code_review family: review sets built by execution, and the judgement pairs execution decides, put on
both shown orders. Then the family on the tiny model, and `+preset=improve` for one iteration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rsi.corpus.counters import count_rows, parse_rate
from rsi.judging.config import JudgingConfig
from rsi.pipeline.assemble import chain_pairs
from rsi.tasks import get_family
from rsi.tasks.code_review import CodeReviewConfig, make_review_sets
from rsi.tasks.family import DERIVED

PROGRAM = '''def solution():
    """The even numbers below 10, largest first."""
    out = []
    for n in range(10):
        if n % 2 == 0:
            out.append(n)
    return out[::-1]
'''


def _program(iid: str, code: str | None, status: str = "ok") -> dict:
    return {"id": iid, "step": "write_program", "parent_id": None, "set_id": "programs", "parsed": code,
            "parse_status": status, "completion": code or "no code here", "kept": status == "ok",
            "procedural_score": None, "procedural_detail": None, "prompt": [{"role": "user", "content": "write"}],
            "seed": 1, "temperature": 0.9, "model_version": 0, "template_hash": "h"}


def _judgment(jid: str, set_id: str, candidates: list[str], shown: list[int], ranking: list[int]) -> dict:
    return {"id": jid, "step": "rank_reviews", "level": 1, "set_id": set_id, "candidate_ids": candidates,
            "presented_order": shown, "ranking": ranking, "raw_text": f"answer {jid}",
            "prompt": [{"role": "user", "content": f"shown {shown}"}], "parse_status": "ok"}


def _review_chain(right_first_shown_wins: bool) -> tuple[dict, int]:
    """One review set of two, judged in both orders by a judge that always picks the first item shown (or, with
    False, one that is right both times). Returns the chain and the index of the original in the set."""
    chain = {"seed": "lists", "items": [_program("p", PROGRAM)], "judgments": []}
    chain["items"] += [
        {**_program("good", PROGRAM), "step": "review", "set_id": "s", "procedural_score": 1.0,
         "finish_reason": DERIVED},
        {**_program("bad", PROGRAM.replace("== 0", "!= 0")), "step": "review", "set_id": "s",
         "procedural_score": 0.0, "finish_reason": DERIVED}]
    good = 0
    for jid, shown in (("j_ab", [0, 1]), ("j_ba", [1, 0])):
        pick = shown[0] if right_first_shown_wins else good
        chain["judgments"].append(_judgment(jid, "s", ["good", "bad"], shown, [pick, 1 - pick]))
    return chain, good


@pytest.mark.unit
def test_truth_pairs_are_put_on_both_shown_orders() -> None:
    """A judge that always picks the first item shown is right in one order and wrong in the other: execution
    decides, and the pair is trained on both prompts, so its chosen answer picks each shown position once."""
    chain, _ = _review_chain(right_first_shown_wins=True)
    prefs, _ = chain_pairs(chain, get_family("code_review"), JudgingConfig(meta_depth=1), {
        "iteration": 0, "family": "code_review", "chain_id": "c"})
    judged = [p for p in prefs if p["step"] == "rank_reviews"]
    assert len(judged) == 2 and len({p["id"] for p in judged}) == 2
    assert {p["chosen"][0]["content"] for p in judged} == {"answer j_ab"}  # the right judgment, on both prompts
    assert {p["rejected"][0]["content"] for p in judged} == {"answer j_ba"}
    assert sorted(p["prompt"][0]["content"] for p in judged) == ["shown [0, 1]", "shown [1, 0]"]
    assert sorted(p["chosen_first_shown"] for p in judged) == [0, 1]  # balanced over the shown positions
    # derived candidates make no performance pair: they are not the policy's answers
    assert not [p for p in prefs if p["step"] == "review"]


@pytest.mark.unit
def test_truth_pairs_contrast_the_ranking_alone() -> None:
    """The rejected answer is the chosen one's text with the wrong ranking: the pair differs in the verdict only."""
    chain, _ = _review_chain(right_first_shown_wins=True)
    for j in chain["judgments"]:
        j["raw_text"] = json.dumps({"rationale": f"why {j['id']}", "ranking": ["AB"[i] for i in j["ranking"]]},
                                   separators=(",", ":"))
    family, base = get_family("code_review"), {"iteration": 0, "family": "code_review", "chain_id": "c"}
    prefs, _ = chain_pairs(chain, family, JudgingConfig(meta_depth=1), base)
    for p in (p for p in prefs if p["step"] == "rank_reviews"):
        assert p["chosen"][0]["content"] == '{"rationale":"why j_ab","ranking":["A","B"]}'
        assert p["rejected"][0]["content"] == '{"rationale":"why j_ab","ranking":["B","A"]}'
    prefs, _ = chain_pairs(chain, family, JudgingConfig(meta_depth=1, truth_same_rationale=False), base)
    assert {p["rejected"][0]["content"] for p in prefs if p["step"] == "rank_reviews"} == {
        '{"rationale":"why j_ba","ranking":["B","A"]}'}


@pytest.mark.unit
def test_truth_pairs_on_the_worse_judgments_prompt_only_when_asked() -> None:
    chain, _ = _review_chain(right_first_shown_wins=True)
    prefs, _ = chain_pairs(chain, get_family("code_review"), JudgingConfig(meta_depth=1, truth_both_orders=False),
                           {"iteration": 0, "family": "code_review", "chain_id": "c"})
    judged = [p for p in prefs if p["step"] == "rank_reviews"]
    assert [p["prompt"][0]["content"] for p in judged] == ["shown [1, 0]"]
    assert [p["chosen_first_shown"] for p in judged] == [1]  # the chosen answer picks the second item shown


@pytest.mark.unit
def test_no_truth_pair_when_the_judge_is_right_in_both_orders() -> None:
    chain, _ = _review_chain(right_first_shown_wins=False)
    prefs, _ = chain_pairs(chain, get_family("code_review"), JudgingConfig(meta_depth=1), {
        "iteration": 0, "family": "code_review", "chain_id": "c"})
    assert not [p for p in prefs if p["step"] == "rank_reviews"]


@pytest.mark.unit
def test_derived_items_are_not_counted_as_model_outputs() -> None:
    from collections import Counter

    chain, _ = _review_chain(right_first_shown_wins=True)
    tallies: Counter = Counter()
    count_rows(tallies, "performances", [{**i, "family": "code_review"} for i in chain["items"]])
    assert parse_rate(tallies) == {"write_program": 1.0}


@pytest.mark.unit
def test_second_ranking_of_a_set_shows_the_reverse_order() -> None:
    from rsi.pipeline.steps import _ranking_requests

    reqs = _ranking_requests("set", 1, ["x", "y", "z"], ["A", "B", "C"], "rank", "rubric", "h", 3,
                             JudgingConfig())
    assert [r["order"] for r in reqs[:2]] == [[0, 1, 2], [2, 1, 0]]
    assert sorted(reqs[2]["order"]) == [0, 1, 2]


@pytest.mark.ray
def test_review_sets_hold_the_program_against_mutants_that_break_it(sandbox) -> None:
    chain = {"seed": "lists", "judgments": [], "items": [
        _program("p_ok", PROGRAM),
        _program("p_nondet", "import time\n\ndef solution():\n    if time.perf_counter_ns() > 0:\n"
                             "        return time.perf_counter_ns()\n    return 0\n"),
        _program("p_unparsed", None, status="no_code"),
        # a mutant (3 -> 4) changes its result, but a literal fixes that result: it computes nothing
        _program("p_literal", "def solution():\n    return [1, 2, 3]\n")]}
    make_review_sets(chain, lambda jobs: [v.to_dict() for v in sandbox.run(jobs)], CodeReviewConfig(reviews=2))
    by_step = {}
    for i in chain["items"]:
        by_step.setdefault(i["step"], []).append(i)
    programs = {p["id"]: p for p in by_step["write_program"]}
    assert programs["p_ok"]["procedural_score"] == 1.0 and programs["p_ok"]["procedural_detail"]["broken"] == 2
    assert programs["p_nondet"]["procedural_score"] == 0.0 and programs["p_unparsed"]["procedural_score"] == 0.0
    literal = programs["p_literal"]
    assert literal["procedural_score"] == 0.0 and literal["procedural_detail"]["broken"] >= 1
    assert literal["procedural_detail"]["computes"] is False
    sets: dict[str, list[dict]] = {}
    for r in by_step["review"]:
        if r["parent_id"] == "p_literal":
            continue
        sets.setdefault(r["set_id"], []).append(r)
    assert len(sets) == 2
    for items in sets.values():
        assert sorted(i["procedural_score"] for i in items) == [0.0, 1.0]
        assert all(i["parent_id"] == "p_ok" and i["finish_reason"] == DERIVED for i in items)
        original = next(i for i in items if i["procedural_score"] == 1.0)
        assert '"""The even numbers below 10, largest first."""' in original["completion"]


@pytest.mark.ray
def test_a_program_that_copies_the_prompts_example_scores_nothing(sandbox) -> None:
    """The writer's reward cannot be won by repeating the example its prompt shows (SmolLM2's pairs taught just
    that): above `max_example_share` a working program scores 0, and its review sets are still made."""
    from rsi.tasks.code_review import _program_variables

    example = _program_variables("lists", None)["example"]

    def run(cfg: CodeReviewConfig) -> dict:
        chain = {"seed": "lists", "judgments": [], "items": [_program("p_copy", example), _program("p_own", PROGRAM)]}
        make_review_sets(chain, lambda jobs: [v.to_dict() for v in sandbox.run(jobs)], cfg)
        return chain

    limited = run(CodeReviewConfig(reviews=1, max_example_share=0.5))
    programs = {i["id"]: i for i in limited["items"] if i["step"] == "write_program"}
    assert programs["p_copy"]["procedural_detail"]["example_share"] == 1.0
    assert programs["p_copy"]["procedural_score"] == 0.0 and programs["p_own"]["procedural_score"] == 1.0
    assert {i["parent_id"] for i in limited["items"] if i["step"] == "review"} == {"p_copy", "p_own"}
    unlimited = run(CodeReviewConfig(reviews=1))
    assert [i["procedural_score"] for i in unlimited["items"] if i["step"] == "write_program"] == [1.0, 1.0]


@pytest.mark.unit
@pytest.mark.parametrize(("code", "computes"), [
    ("def solution():\n    return 10\n", False),
    ('def solution():\n    return [{"apple": 3}, {"pear": 5}]\n', False),
    ("def solution():\n    xs = [3, 1, 2]\n    return xs\n", False),
    ("def solution():\n    return -1\n", False),
    ("def solution():\n    return sorted([3, 1, 2])\n", True),
    ("def solution():\n    xs = [3, 1, 2]\n    return xs[0] * 2\n", True),
    (PROGRAM, True),
])
def test_a_program_computes_when_it_does_any_work(code: str, computes: bool) -> None:
    from rsi.tasks.code_review import computes_its_result

    assert computes_its_result(code) is computes


@pytest.mark.unit
def test_example_share_outside_zero_to_one_fails_naming_the_key() -> None:
    from rsi.config import ConfigError, _family_config

    with pytest.raises(ConfigError, match=r"^tasks\.code_review\.max_example_share: must be within \[0, 1\]"):
        _family_config("code_review", {"seeds": ["lists"], "max_example_share": 1.5})


@pytest.mark.e2e
def test_improve_preset_runs_one_iteration_on_the_tiny_model(tiny_model: Path, tmp_path: Path) -> None:
    """`rsi run +preset=improve` as a user runs it, sized down to the tiny model. Its random text never holds a
    program, so the review sets stay empty and a small open_ended family gives DPO its pairs; the review
    stages still run, and the preset's settings reach the run."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rsi.cli", "run", "+preset=improve", "model=tiny", f"model.path={tiny_model}",
           f"run.dir={run_dir}", "backend.kv_cache_gb=0.25", "backend.num_cpus=0",
           "tasks=[code_review,open_ended]", "tasks.code_review.seeds=[lists]", "tasks.code_review.candidates=2",
           "tasks.code_review.max_tokens=32", "tasks.open_ended.seeds=[queues]", "tasks.open_ended.candidates=3",
           "tasks.open_ended.max_tokens=24", "judging.max_tokens=40", "judging.rationale_chars=16",
           "train.max_steps=1", "evals.tasks=[judge_accuracy]", "evals.limit=2", "gate.metrics=[judge_accuracy]"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    resolved = (run_dir / ".hydra" / "config.yaml").read_text() if (run_dir / ".hydra").is_dir() else ""
    summary = json.loads((run_dir / "summary.json").read_text())
    record = summary["iterations"][0] if isinstance(summary, dict) else summary[0]
    assert "write_program" in record["parse_rate_per_step"]
    assert "learning_rate: 3.0e-05" in resolved and "meta_depth: 1" in resolved
