"""Negotiation scenarios: deterministic from the seed, every template reachable, each side's sheet its own."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from rsi.tasks.pareto import valid_points
from rsi.tasks.scenarios import (
    PRICE,
    SCHEDULE,
    SPLIT,
    TEMPLATES,
    brief,
    claim_value,
    make_scenario,
    offer_help,
    offer_text,
    utility,
    valid,
    violations,
)

pytestmark = pytest.mark.unit


def test_the_same_seed_gives_the_same_scenario_in_another_process() -> None:
    here = [repr(make_scenario(f"seed {k}")) for k in range(5)]
    code = ("from rsi.tasks.scenarios import make_scenario\n"
            "for k in range(5):\n    print(repr(make_scenario(f'seed {k}')))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"}).stdout.splitlines()
    assert here == there


def test_seeds_reach_dozens_of_templates_of_all_three_kinds() -> None:
    assert len(TEMPLATES) >= 30
    used = Counter(make_scenario(f"s{k}").template for k in range(600))
    assert len(used) == len(TEMPLATES)
    assert {t.split("/")[0] for t in used} == {SPLIT, SCHEDULE, PRICE}
    assert len({repr(make_scenario(f"s{k}")) for k in range(200)}) == 200


def test_every_scenario_has_a_valid_deal_and_is_small_enough_to_enumerate() -> None:
    for k in range(300):
        scn = make_scenario(f"s{k}")
        points = valid_points(scn)
        assert points and scn.deals() <= 256
        assert all(valid(scn, d) for d in points.values())


def test_a_sheet_names_its_own_points_and_limits_only() -> None:
    for k in range(100):
        scn = make_scenario(f"s{k}")
        for side in (0, 1):
            text = brief(scn, side)
            assert scn.sides[side].role in text
            if scn.sides[side].budget_text:
                assert scn.sides[side].budget_text in text
            other = scn.sides[1 - side]
            if other.budget_text and other.budget_text != scn.sides[side].budget_text:
                assert other.budget_text not in text
        assert all(iss.name in offer_help(scn) for iss in scn.issues)


def test_offers_are_written_from_the_writers_side() -> None:
    scn = next(s for k in range(50) if (s := make_scenario(f"s{k}")).kind == SPLIT)
    deal = tuple(len(iss.options) - 1 for iss in scn.issues)  # A gets everything
    assert offer_text(scn, 0, deal) == ", ".join(f"{i.name}={len(i.options) - 1}" for i in scn.issues)
    assert offer_text(scn, 1, deal) == ", ".join(f"{i.name}=0" for i in scn.issues)
    # each unit A gets is worth claim_value to A
    assert utility(scn, 0, deal) == sum(claim_value(scn, 0, i) * (len(iss.options) - 1)
                                        for i, iss in enumerate(scn.issues))


def test_a_deal_over_the_budget_breaks_that_sides_limit() -> None:
    scn = next(s for k in range(100) if (s := make_scenario(f"s{k}")).kind == PRICE)
    buyer = scn.sides[1]
    dearest = (len(scn.issues[0].options) - 1,) + tuple(1 for _ in scn.issues[1:])
    spent = sum(buyer.spend[i][o] for i, o in enumerate(dearest))
    assert (spent > buyer.budget) == any("over budget" in v for v in violations(scn, 1, dearest))
    cheapest = (0,) * len(scn.issues)
    assert any("must-have" in v for v in violations(scn, 0, cheapest)) == (0 not in scn.sides[0].must[0][1])
