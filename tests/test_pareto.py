"""The exact Pareto frontier against brute force: every deal enumerated, every pair compared."""

from __future__ import annotations

import itertools

import pytest

from rsi.tasks.pareto import efficiency, frontier, valid_points
from rsi.tasks.scenarios import make_scenario, utility, valid

pytestmark = pytest.mark.unit


def _brute(scn) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    points = {(utility(scn, 0, d), utility(scn, 1, d))
              for d in itertools.product(*(range(len(i.options)) for i in scn.issues)) if valid(scn, d)}
    front = {p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)}
    return points, front


@pytest.mark.parametrize("block", range(4))
def test_frontier_matches_brute_force(block: int) -> None:
    for k in range(block * 100, block * 100 + 100):
        scn = make_scenario(f"pareto {k}")
        points, front = _brute(scn)
        got = valid_points(scn)
        assert set(got) == points, scn.template
        assert set(frontier(got)) == front
        for (ua, ub), deal in got.items():
            assert valid(scn, deal) and (utility(scn, 0, deal), utility(scn, 1, deal)) == (ua, ub)


def test_frontier_of_hand_made_points() -> None:
    assert frontier({(1, 1), (2, 0), (0, 2), (1, 0), (2, 0)}) == [(2, 0), (1, 1), (0, 2)]
    assert frontier({(3, 3), (1, 1), (3, 1)}) == [(3, 3)]


def test_efficiency_of_every_valid_deal() -> None:
    for k in range(60):
        scn = make_scenario(f"eff {k}")
        _, front = _brute(scn)
        best_joint = max(a + b for a, b in front)
        for d in itertools.product(*(range(len(i.options)) for i in scn.issues)):
            if not valid(scn, d):
                with pytest.raises(ValueError):
                    efficiency(scn, d)
                continue
            e = efficiency(scn, d)
            assert e.pareto_optimal == ((utility(scn, 0, d), utility(scn, 1, d)) in front)
            assert e.best_joint == best_joint and e.joint <= best_joint
