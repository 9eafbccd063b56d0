"""The gate's decisions on item-level results, and the filter that keeps held-out items out of the corpus."""

from __future__ import annotations

import pytest

from rsi.evals.config import GateConfig
from rsi.evals.gate import decide, ids_of_half
from rsi.evals.overlap import OverlapFilter
from rsi.evals.task import half_of

pytestmark = pytest.mark.unit


def _items(correct: list[int], prefix: str = "i") -> list[dict]:
    return [{"id": f"{prefix}{k}", "correct": c} for k, c in enumerate(correct)]


def _gate_ids(n: int) -> list[int]:
    return [k for k in range(n) if half_of(f"i{k}") == "gate"]


def test_halves_split_every_set_deterministically() -> None:
    ids = [f"i{k}" for k in range(400)]
    gate = [i for i in ids if half_of(i) == "gate"]
    assert 160 < len(gate) < 240 and [half_of(i) for i in ids] == [half_of(i) for i in ids]
    assert ids_of_half(_items([1] * 400), "gate") == set(gate)


def test_a_significant_drop_on_the_gate_half_rejects() -> None:
    n = 200
    gate = set(_gate_ids(n))
    kept = {"humaneval": _items([1] * n)}
    worse = {"humaneval": _items([0 if k in gate and k % 3 else 1 for k in range(n)])}  # two thirds lost
    d = decide(kept, worse, GateConfig(metrics=["humaneval"]))
    assert not d.keep and "humaneval" in d.reasons[0]
    assert d.gate["humaneval"]["ci95"][1] < 0 and d.gate["humaneval"]["p"] < 0.001
    assert d.claim["humaneval"]["delta"] == 0  # the other half did not move
    # the same drop is acceptable with a tolerance below the CI, but a point-estimate drop still fails min_gain
    lenient = decide(kept, worse, GateConfig(metrics=["humaneval"], tolerance=0.9, min_gain=-1.0))
    assert lenient.keep and lenient.reasons == []


def test_equal_versions_are_kept_and_min_gain_can_force_a_rejection() -> None:
    same = {"humaneval": _items([1, 0] * 50), "judge_accuracy": _items([0, 1] * 50, "j")}
    cfg = GateConfig(metrics=["humaneval", "judge_accuracy"])
    assert decide(same, same, cfg).keep
    forced = decide(same, same, GateConfig(metrics=["humaneval", "judge_accuracy"], min_gain=1.0))
    assert not forced.keep and "min_gain" in forced.reasons[0]
    assert decide(same, same, GateConfig(enabled=False, min_gain=1.0)).keep


def test_gating_on_a_task_not_evaluated_fails_naming_it() -> None:
    with pytest.raises(ValueError, match="format_following"):
        decide({"humaneval": _items([1])}, {"humaneval": _items([1])}, GateConfig(metrics=["format_following"]))


def test_overlap_filter_drops_rows_sharing_ten_code_tokens() -> None:
    held_out = "def add(a, b):\n    return a + b  # the sum of a and b\n"
    f = OverlapFilter([held_out], n=10)
    row = {"prompt": [{"role": "user", "content": "solve it"}],
           "chosen": [{"role": "assistant", "content": "x = 1\ndef add(a, b):\n    return a + b\n"}],
           "rejected": [{"role": "assistant", "content": "pass"}]}
    clean = row | {"chosen": [{"role": "assistant", "content": "def mul(a, b):\n    return a * b\n"}]}
    kept, dropped = f.keep([row, clean])
    assert kept == [clean] and dropped == 1
    assert not OverlapFilter([held_out], n=40).overlaps(held_out + held_out[:-1])  # too short for 40 tokens
