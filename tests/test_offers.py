"""The negotiation turn parser: well-formed turns read exactly, every malformed one is a recorded failure with its
reason, and whatever a model writes, it never raises."""

from __future__ import annotations

import pytest
from fuzz_strategies import FUZZ, encodable, model_text
from hypothesis import example, given
from hypothesis import strategies as st

from rsi.tasks.offers import FAILURES, OK, parse_offer, parse_turn
from rsi.tasks.pareto import valid_points
from rsi.tasks.scenarios import PRICE, SCHEDULE, SPLIT, claim_value, make_scenario, offer_text

pytestmark = pytest.mark.unit


def _of(kind: str, start: int = 0):
    return next(s for k in range(start, start + 200) if (s := make_scenario(f"t{k}")).kind == kind)


@pytest.mark.parametrize("kind", [SPLIT, SCHEDULE, PRICE])
def test_every_deal_reads_back_from_both_sides(kind: str) -> None:
    scn = _of(kind)
    for deal in list(valid_points(scn).values())[:20]:
        for side in (0, 1):
            turn = parse_turn(f"Here is my idea.\nOFFER: {offer_text(scn, side, deal)}", scn, side, None)
            assert turn.ok and turn.offer == deal and turn.message == "Here is my idea."
            assert turn.violations == []


def test_acceptance_takes_the_table_and_a_restated_one_must_match_it() -> None:
    scn = _of(SPLIT)
    deals = list(valid_points(scn).values())
    table = deals[0]
    for text in ("Deal.\nACCEPT", "**ACCEPT**", f"ACCEPT: {offer_text(scn, 1, table)}"):
        turn = parse_turn(text, scn, 1, table)
        assert turn.ok and turn.accept and turn.offer == table, text
    other = next(d for d in deals if d != table) if len(deals) > 1 else None
    if other is not None:
        turn = parse_turn(f"ACCEPT: {offer_text(scn, 1, other)}", scn, 1, table)
        assert turn.status == "accept_mismatch" and "table holds" in turn.error and turn.offer is None
    assert parse_turn("ACCEPT", scn, 1, None).status == "accept_without_offer"


@pytest.mark.parametrize("text,status,why", [
    ("", "empty", "no text"),
    ("OFFER: nonsense", "bad_offer", "not name=value"),
    ("OFFER: unicorn=3", "bad_offer", "unknown issue"),
    ("OFFER:", "bad_offer", "missing"),
    ("OFFER: a\nACCEPT", "bad_format", "both"),
    ("OFFER: a\nOFFER: b", "bad_format", "2 OFFER"),
])
def test_malformed_turns_fail_with_their_reason(text: str, status: str, why: str) -> None:
    scn = _of(SPLIT)
    turn = parse_turn(text, scn, 0, None)
    assert turn.status == status and why in turn.error and not turn.accept and turn.offer is None


def test_an_out_of_range_option_or_a_repeated_issue_is_a_bad_offer() -> None:
    scn = _of(SPLIT)
    first = scn.issues[0]
    rest = ", ".join(f"{i.name}=0" for i in scn.issues[1:])
    assert parse_offer(f"{first.name}={len(first.options)}, {rest}", scn, 0)[1].endswith("not one of its options")
    assert "named twice" in parse_offer(f"{first.name}=0, {first.name}=0, {rest}", scn, 0)[1]


def test_an_offer_over_the_writers_budget_parses_and_records_the_violation() -> None:
    scn = _of(PRICE)
    top = (len(scn.issues[0].options) - 1,) + (1,) * (len(scn.issues) - 1)
    buyer = scn.sides[1]
    over = sum(buyer.spend[i][o] for i, o in enumerate(top)) > buyer.budget
    turn = parse_turn(f"My best.\nOFFER: {offer_text(scn, 1, top)}", scn, 1, None)
    assert turn.ok and turn.offer == top
    assert any("over budget" in v for v in turn.violations) == over


def test_stated_values_are_checked_against_the_sheet() -> None:
    scn = _of(SPLIT)
    name = scn.issues[0].name
    truth = claim_value(scn, 0, 0)
    honest = parse_turn(f"VALUE: {name}={truth}", scn, 0, None)
    assert honest.ok and honest.claims == [(name, truth)] and honest.lies == []
    lie = parse_turn(f"Honestly, the {name} is worth {truth + 3} points to me.", scn, 0, None)
    assert lie.lies == [{"issue": name, "stated": truth + 3, "sheet": truth}]
    assert parse_turn(f"I value the {name}s at {truth + 1}", scn, 0, None).lies[0]["stated"] == truth + 1


def _structured(scn) -> st.SearchStrategy[str]:
    names = [i.name for i in scn.issues] + ["unknown", "price", ""]
    pair = st.tuples(st.sampled_from(names), st.sampled_from(["=", ":", " "]),
                     st.one_of(st.integers(-3, 2000).map(str), st.sampled_from(["me", "you", "yes", "no", ""]),
                               model_text))
    body = st.lists(pair, max_size=6).map(lambda ps: ", ".join(f"{n}{s}{v}" for n, s, v in ps))
    line = st.tuples(st.sampled_from(["OFFER: ", "ACCEPT", "ACCEPT: ", "VALUE: ", "**OFFER:** ", "offer: "]), body)
    return st.lists(st.one_of(line.map("".join), model_text), max_size=5).map("\n".join)


@pytest.mark.parametrize("kind", [SPLIT, SCHEDULE, PRICE])
@FUZZ
@given(data=st.data(), side=st.sampled_from([0, 1]), on_table=st.booleans())
@example(data=None, side=0, on_table=True)
def test_parse_turn_never_raises(kind: str, data, side: int, on_table: bool) -> None:
    scn = _of(kind)
    text = "OFFER: " + "," * 10_000 if data is None else data.draw(st.one_of(_structured(scn), model_text))
    table = next(iter(valid_points(scn).values())) if on_table else None
    turn = parse_turn(text, scn, side, table)
    assert turn.status == OK or turn.status in FAILURES
    assert encodable(turn.to_dict())
    if turn.ok and turn.offer is not None:
        assert len(turn.offer) == len(scn.issues)
        assert all(0 <= o < len(i.options) for o, i in zip(turn.offer, scn.issues))
    if turn.accept:
        assert turn.offer == table
    if not turn.ok:
        assert turn.error and turn.offer is None and not turn.accept
