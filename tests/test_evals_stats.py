"""Evaluation statistics against textbook values: Wilson intervals (Newcombe 1998), exact McNemar, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rsi.evals import compare, stats
from rsi.evals.task import TaskResult

pytestmark = pytest.mark.unit


# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison of seven methods",
# Stat Med 17:857-872, Table II, method 3 (Wilson score, no continuity correction), to 4 decimals.
NEWCOMBE_1998 = [
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0000, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
    ((29, 29), (0.8830, 1.0000)),
]


@pytest.mark.parametrize("kn,expected", NEWCOMBE_1998)
def test_wilson_matches_newcombe_1998(kn: tuple[int, int], expected: tuple[float, float]) -> None:
    lo, hi = stats.wilson(*kn)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_wilson_edges() -> None:
    # 0/10: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775 (closed form at k = 0).
    lo, hi = stats.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-12)
    assert round(hi, 4) == 0.2775
    assert stats.wilson(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)  # symmetric to 0/10


def _binom_two_sided(b: int, c: int) -> float:
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) * 0.5**n for i in range(min(b, c) + 1)))


def test_mcnemar_exact_textbook() -> None:
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024 = 0.0215 (two-sided exact binomial test).
    assert stats.mcnemar_exact(1, 9) == pytest.approx(0.021484375)
    assert stats.mcnemar_exact(9, 1) == stats.mcnemar_exact(1, 9)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == 1.0  # balanced: capped at 1
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_mcnemar_cross_check() -> None:
    try:
        from scipy.stats import binomtest
    except ImportError:  # scipy is not a dependency; fall back to the direct sum
        binomtest = None
    for b, c in [(1, 9), (3, 12), (20, 31), (0, 1), (7, 7), (150, 190)]:
        ref = binomtest(b, b + c, 0.5).pvalue if binomtest else _binom_two_sided(b, c)
        assert stats.mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9)


def test_bootstrap_contains_mean_and_narrows() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 200, 2000):
        x = (rng.random(n) < 0.3).astype(float)
        lo, hi = stats.bootstrap_ci(x)
        assert lo <= x.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0
    assert stats.bootstrap_ci([1, 0, 1, 1]) == stats.bootstrap_ci([1, 0, 1, 1])  # seeded
    assert stats.bootstrap_ci([]) == (0.0, 0.0)


def test_bootstrap_matches_efron_tibshirani_mouse_data() -> None:
    """Efron & Tibshirani (1993), An Introduction to the Bootstrap, Table 2.1: the treatment group's mean is
    86.86 and its ideal (B = infinity) bootstrap standard error is 23.36. A 95% percentile interval spans about
    ±1.96 of that around the mean (n = 7 is slightly skewed, hence 3%)."""
    treatment = [94, 197, 16, 38, 99, 141, 23]
    for seed in range(3):
        lo, hi = stats.bootstrap_ci(treatment, reps=20000, seed=seed)
        assert (hi - lo) / (2 * stats.Z95) == pytest.approx(23.36, rel=0.03)
        assert (lo + hi) / 2 == pytest.approx(86.86, abs=3.0)


def test_paired_bootstrap() -> None:
    a = [1, 0, 1, 1, 0, 0, 1]
    assert stats.paired_bootstrap(a, a) == (0.0, 0.0)
    lo, hi = stats.paired_bootstrap([0] * 50, [1] * 50)
    assert lo == hi == 1.0
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1], [1, 0])


def test_compare_items() -> None:
    a = [{"id": f"q{i}", "correct": int(i < 5)} for i in range(20)]
    b = [{"id": f"q{i}", "correct": int(i < 15)} for i in range(20)] + [{"id": "extra", "correct": 1}]
    out = stats.compare_items(a, b)
    assert out["n"] == 20 and out["delta"] == pytest.approx(0.5)
    assert out["p"] == pytest.approx(stats.mcnemar_exact(0, 10))
    lo, hi = out["ci95"]
    assert 0 < lo <= 0.5 <= hi
    half = stats.compare_items(a, b, only={"q0", "q1", "q10", "missing"})
    assert half["n"] == 3 and half["delta"] == pytest.approx(1 / 3)
    assert stats.compare_items(a, [], None) == {"delta": 0.0, "ci95": (0.0, 0.0), "p": 1.0, "n": 0}
    same = stats.compare_items(a, a)
    assert same["delta"] == 0.0 and same["ci95"] == (0.0, 0.0) and same["p"] == 1.0


# ------------------------------------------------------------------------------------ evaluation directories
def _result(task: str, correct: list[int], **extra: dict) -> TaskResult:
    items = [{"id": f"{task}-{i}", "correct": c, "raw": "x\ny"} for i, c in enumerate(correct)]
    k = sum(correct)
    return TaskResult(task, "accuracy", k / len(correct), stats.wilson(k, len(correct)), len(correct), items, extra)


def test_write_and_load_eval_dir(tmp_path) -> None:  # noqa: ANN001
    results = [_result("t1", [1, 0, 1]), _result("t2", [0, 0], parse_rate={"value": 1.0, "ci95": [0.5, 1], "n": 2})]
    compare.write_eval_dir(str(tmp_path), results)
    metrics, items = compare.load_eval_dir(str(tmp_path))
    assert metrics["t1"] == {"metric": "accuracy", "value": 2 / 3, "ci95": list(stats.wilson(2, 3)), "n": 3}
    assert metrics["t2"]["parse_rate"] == {"value": 1.0, "ci95": [0.5, 1], "n": 2}
    assert items["t1"] == results[0].items and len(items["t2"]) == 2
    with pytest.raises(ValueError, match="twice"):
        compare.write_eval_dir(str(tmp_path), [results[0], results[0]])


def test_load_eval_dir_errors_name_the_file(tmp_path) -> None:  # noqa: ANN001
    d = str(tmp_path)
    with pytest.raises(compare.EvalDirError, match="metrics.json: missing"):
        compare.load_eval_dir(d)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(compare.EvalDirError, match="metrics.json: not JSON"):
        compare.load_eval_dir(d)
    (tmp_path / "metrics.json").write_text('{"t1": 3}')
    with pytest.raises(compare.EvalDirError, match="metrics.json: expected"):
        compare.load_eval_dir(d)
    (tmp_path / "metrics.json").write_text('{"t1": {"metric": "accuracy"}}')
    with pytest.raises(compare.EvalDirError, match=r"t1.jsonl: missing"):
        compare.load_eval_dir(d)
    (tmp_path / "t1.jsonl").write_text('{"id": "a", "correct": 1}\n\n{"id": "b"\n')
    with pytest.raises(compare.EvalDirError, match=r"t1.jsonl:3: not JSON"):
        compare.load_eval_dir(d)
    (tmp_path / "t1.jsonl").write_text('{"id": "a", "correct": 1}\n{"id": "b"}\n')
    with pytest.raises(compare.EvalDirError, match=r"t1.jsonl:2: an item needs"):
        compare.load_eval_dir(d)


def test_compare_cli(tmp_path, capsys) -> None:  # noqa: ANN001
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    compare.write_eval_dir(a, [_result("t1", [0] * 10 + [1] * 10), _result("only_a", [1])])
    compare.write_eval_dir(b, [_result("t1", [1] * 20), _result("only_b", [1])])
    assert compare.main([a, b, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["t1"]
    assert out["t1"]["delta"] == pytest.approx(0.5) and out["t1"]["n"] == 20
    assert out["t1"]["p"] == pytest.approx(stats.mcnemar_exact(0, 10))
    assert compare.main([a, b]) == 0
    assert "t1" in capsys.readouterr().out
    assert compare.main([a, str(tmp_path / "nope")]) == 2
    assert "nope/metrics.json: missing" in capsys.readouterr().err


def test_compare_dirs_pairs_the_judges_same_pick_in_both_orders(tmp_path) -> None:  # noqa: ANN001
    """A judge that stops picking by position shows in `judge_accuracy.same_pick_both_orders` even while its
    accuracy (right in both orders) has not moved."""
    def judge(picks: list[tuple[int | None, int | None]]) -> TaskResult:
        items = [{"id": f"p{k}", "correct": 0, "pick_AB": ab, "pick_BA": ba} for k, (ab, ba) in enumerate(picks)]
        return TaskResult(task="judge_accuracy", metric="accuracy", value=0.0, ci95=(0.0, 0.0), n=len(items),
                          items=items)

    compare.write_eval_dir(str(tmp_path / "a"), [judge([(0, 1)] * 12)])  # always the first shown
    compare.write_eval_dir(str(tmp_path / "b"), [judge([(1, 1)] * 10 + [(0, None), (0, 1)])])
    rows = compare.compare_dirs(str(tmp_path / "a"), str(tmp_path / "b"))
    assert rows["judge_accuracy"]["delta"] == 0.0
    same = rows["judge_accuracy.same_pick_both_orders"]
    assert same["n"] == 12 and same["delta"] == pytest.approx(10 / 12) and same["p"] < 0.01


def test_compare_dirs_breaks_format_following_down_by_step_and_keeps_one_half(tmp_path) -> None:  # noqa: ANN001
    """A format the loop trains can rise while another falls and the mean hides both: each family and step gets
    its own paired row, and `half` keeps the items of one half alone (the gate's items are not the claim)."""
    from rsi.evals.task import half_of

    def ff(rates: dict[str, list[int]]) -> TaskResult:
        items = [{"id": f"{step}-{k}", "family": step.split(".")[0], "step": step.split(".")[1], "correct": c}
                 for step, cs in rates.items() for k, c in enumerate(cs)]
        return TaskResult(task="format_following", metric="parse_rate", value=0.0, ci95=(0.0, 0.0),
                          n=len(items), items=items)

    compare.write_eval_dir(str(tmp_path / "a"), [ff({"code_review.write_program": [0] * 30 + [1] * 30,
                                                     "python_output.write_program": [1] * 30})])
    compare.write_eval_dir(str(tmp_path / "b"), [ff({"code_review.write_program": [1] * 60,
                                                     "python_output.write_program": [0] * 30})])
    rows = compare.compare_dirs(str(tmp_path / "a"), str(tmp_path / "b"))
    assert rows["format_following"]["delta"] == pytest.approx(0.0)
    up, down = rows["format_following.code_review.write_program"], rows["format_following.python_output.write_program"]
    assert up["n"] == 60 and up["delta"] == pytest.approx(0.5) and up["p"] < 1e-6
    assert down["n"] == 30 and down["delta"] == pytest.approx(-1.0) and down["p"] < 1e-6
    claim = compare.compare_dirs(str(tmp_path / "a"), str(tmp_path / "b"), half="claim")
    ids = [f"code_review.write_program-{k}" for k in range(60)]
    assert claim["format_following.code_review.write_program"]["n"] == sum(half_of(i) == "claim" for i in ids)
    assert 0 < claim["format_following"]["n"] < rows["format_following"]["n"]
    with pytest.raises(ValueError, match="half"):
        compare.compare_dirs(str(tmp_path / "a"), str(tmp_path / "b"), half="other")


def test_compare_dirs_pairs_judge_accuracy_per_mutation_kind(tmp_path) -> None:  # noqa: ANN001
    """A judge that learns to see dropped branches while it loses flipped comparisons shows both, each kind on its
    own paired row; an evaluation from before items named their mutation has no such rows."""
    def judge(correct: dict[str, list[int]], with_kind: bool = True) -> TaskResult:
        items = [{"id": f"{kind}-{k}", "correct": c, **({"mutation": kind} if with_kind else {})}
                 for kind, cs in correct.items() for k, c in enumerate(cs)]
        return TaskResult(task="judge_accuracy", metric="accuracy", value=0.0, ci95=(0.0, 0.0), n=len(items),
                          items=items)

    compare.write_eval_dir(str(tmp_path / "a"), [judge({"drop_branch": [0] * 20, "flip": [1] * 20})])
    compare.write_eval_dir(str(tmp_path / "b"), [judge({"drop_branch": [1] * 20, "flip": [0] * 20})])
    rows = compare.compare_dirs(str(tmp_path / "a"), str(tmp_path / "b"))
    assert rows["judge_accuracy"]["delta"] == 0.0 and rows["judge_accuracy"]["p"] == 1.0
    up, down = rows["judge_accuracy.drop_branch"], rows["judge_accuracy.flip"]
    assert up["n"] == down["n"] == 20 and up["delta"] == 1.0 and down["delta"] == -1.0
    assert up["p"] == down["p"] == pytest.approx(stats.mcnemar_exact(0, 20))
    assert up["better"] == down["better"] == "higher"
    compare.write_eval_dir(str(tmp_path / "old"), [judge({"drop_branch": [0] * 20}, with_kind=False)])
    rows = compare.compare_dirs(str(tmp_path / "old"), str(tmp_path / "old"))
    assert set(rows) == {"judge_accuracy", "judge_accuracy.same_pick_both_orders"}
