"""The exact Pareto frontier of a negotiation scenario's valid deals (rsi.tasks.scenarios).

The deals are few (at most some hundreds), but their number is a product over issues, so they are enumerated issue
by issue: a partial deal is kept only as far as it differs in what is left to decide (both sides' points and spends
so far), and a partial deal over a budget is dropped at once, since spends never fall. Must-haves restrict an issue's
options. The frontier is then one sweep over the points sorted by A's utility.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsi.tasks.scenarios import Deal, Scenario, utility, valid

Point = tuple[int, int]  # (A's utility, B's utility)


def _allowed(scn: Scenario, issue: int) -> list[int]:
    opts = set(range(len(scn.issues[issue].options)))
    for side in scn.sides:
        for i, allowed in side.must:
            if i == issue:
                opts &= set(allowed)
    return sorted(opts)


def _spend(scn: Scenario, side: int, issue: int, option: int) -> int:
    s = scn.sides[side]
    return s.spend[issue][option] if s.spend is not None else 0


def _budget(scn: Scenario, side: int) -> float:
    b = scn.sides[side].budget
    return float("inf") if b is None or scn.sides[side].spend is None else b


def valid_points(scn: Scenario) -> dict[Point, Deal]:
    """Every (uA, uB) some valid deal reaches, each with one such deal (the first in option order)."""
    states: dict[tuple[int, int, int, int], Deal] = {(0, 0, 0, 0): ()}
    budgets = (_budget(scn, 0), _budget(scn, 1))
    for issue in range(len(scn.issues)):
        nxt: dict[tuple[int, int, int, int], Deal] = {}
        for (ua, ub, sa, sb), deal in states.items():
            for o in _allowed(scn, issue):
                na, nb = sa + _spend(scn, 0, issue, o), sb + _spend(scn, 1, issue, o)
                if na > budgets[0] or nb > budgets[1]:
                    continue
                key = (ua + scn.sides[0].points[issue][o], ub + scn.sides[1].points[issue][o], na, nb)
                nxt.setdefault(key, deal + (o,))
        states = nxt
    points: dict[Point, Deal] = {}
    for (ua, ub, _, _), deal in sorted(states.items(), key=lambda kv: kv[1]):
        points.setdefault((ua, ub), deal)
    return points


def frontier(points: list[Point] | set[Point] | dict[Point, Deal]) -> list[Point]:
    """The points no other point weakly dominates, by A's utility descending (so B's ascending)."""
    out: list[Point] = []
    best_b = None
    for ua, ub in sorted(set(points), key=lambda p: (-p[0], -p[1])):
        if best_b is None or ub > best_b:
            out.append((ua, ub))
            best_b = ub
    return out


@dataclass(frozen=True)
class Efficiency:
    pareto_optimal: bool  # no valid deal is at least as good for both sides and better for one
    joint: int  # uA + uB of the deal
    best_joint: int  # the largest uA + uB of any valid deal (always on the frontier)
    best: tuple[int, int]  # each side's best utility over the valid deals: what a utility share is measured against


def efficiency(scn: Scenario, deal: Deal) -> Efficiency:
    """Where a valid deal stands against the frontier. Raises ValueError for an invalid deal."""
    if not valid(scn, deal):
        raise ValueError("efficiency is defined for valid deals only")
    points = valid_points(scn)
    front = frontier(points)
    ua, ub = utility(scn, 0, deal), utility(scn, 1, deal)
    dominated = any(pa >= ua and pb >= ub and (pa, pb) != (ua, ub) for pa, pb in front)
    return Efficiency(not dominated, ua + ub, max(a + b for a, b in front),
                      (max(a for a, _ in front), max(b for _, b in front)))
