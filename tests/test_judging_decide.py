"""decide_pairs: one candidate set's weights, scores and pairs, as the pipeline's assemble step uses them."""

from __future__ import annotations

import pytest

from rsi.judging.config import JudgingConfig
from rsi.judging.decide import Candidate, Judgment, decide_pairs

pytestmark = pytest.mark.unit


def _cands(n: int, lengths: list[int] | None = None, procedural: list[float] | None = None) -> list[Candidate]:
    return [Candidate(f"c{i}", (lengths or [100] * n)[i], None if procedural is None else procedural[i])
            for i in range(n)]


def _j(name: str, ranking: list[int] | None, presented: list[int] | None = None) -> Judgment:
    return Judgment(name, ranking, presented or sorted(ranking or [0, 1, 2, 3]))


def test_performance_pair_and_weights() -> None:
    level1 = [_j("a", [0, 1, 2, 3]), _j("b", [0, 2, 1, 3]), _j("c", [0, 1, 3, 2]), _j("x", None)]
    d = decide_pairs(_cands(4), [level1], JudgingConfig(length_control=False))
    assert d.weights[0][3] == 0.0 and all(w > 0 for w in d.weights[0][:3])  # invalid answers weigh nothing
    (pair,) = d.pairs
    assert (pair.level, pair.chosen, pair.rejected, pair.origin) == (0, 0, 3, "judges")
    assert 0 < pair.margin < 1 and pair.source_ids == ["a", "b", "c"]
    assert len(d.scores[0]) == 4


def test_length_control_prefers_the_shorter_near_top() -> None:
    # 0 and 1 split the judges evenly: within each other's uncertainty; 1 is much shorter
    level1 = [_j("a", [0, 1, 2, 3]), _j("b", [1, 0, 2, 3])] * 2
    with_lc = decide_pairs(_cands(4, lengths=[900, 100, 50, 50]), [level1], JudgingConfig())
    without = decide_pairs(_cands(4, lengths=[900, 100, 50, 50]), [level1], JudgingConfig(length_control=False))
    assert with_lc.pairs[0].chosen == 1
    assert without.pairs[0].chosen in (0, 1)


def test_procedural_truth_overrides_judges_and_ranks_level1() -> None:
    # the judges prefer 0, execution says 3 passes everything
    level1 = [_j("a", [0, 1, 2, 3]), _j("b", [3, 2, 1, 0]), _j("c", [0, 2, 1, 3])]
    d = decide_pairs(_cands(4, procedural=[0.0, 0.25, 0.5, 1.0]), [level1], JudgingConfig())
    perf = [p for p in d.pairs if p.level == 0][0]
    assert (perf.chosen, perf.rejected, perf.origin) == (3, 0, "procedural")
    judge = [p for p in d.pairs if p.level == 1][0]
    assert (judge.chosen, judge.origin) == (1, "procedural")  # b agrees with execution
    assert d.weights[0][1] > d.weights[0][0]


def test_meta_judgments_weight_level1_and_make_a_judgement_pair() -> None:
    level1 = [_j("a", [0, 1, 2]), _j("b", [2, 1, 0]), _j("c", [0, 1, 2])]
    # three meta-judges all put b last
    level2 = [_j("m1", [0, 2, 1]), _j("m2", [2, 0, 1]), _j("m3", [0, 2, 1])]
    d = decide_pairs(_cands(3), [level1, level2], JudgingConfig(consensus_rounds=0))
    assert d.weights[0][1] < min(d.weights[0][0], d.weights[0][2])
    judge = [p for p in d.pairs if p.level == 1][0]
    assert judge.rejected == 1 and judge.origin == "judges" and set(judge.source_ids) == {"m1", "m2", "m3"}


def test_depth_three_weights_flow_down() -> None:
    level1 = [_j("a", [0, 1]), _j("b", [1, 0])]
    level2 = [_j("m1", [0, 1]), _j("m2", [1, 0])]
    level3 = [_j("t1", [0, 1]), _j("t2", [0, 1])]  # the top prefers m1, who prefers a
    d = decide_pairs(_cands(2), [level1, level2, level3], JudgingConfig(consensus_rounds=0, min_margin=0.0))
    assert d.weights[1][0] > d.weights[1][1] and d.weights[0][0] > d.weights[0][1]
    assert {p.level for p in d.pairs} == {0, 1, 2}


def test_no_pair_without_a_gap_or_for_identical_texts() -> None:
    level1 = [_j("a", [0, 1]), _j("b", [1, 0])]
    assert decide_pairs(_cands(2), [level1], JudgingConfig()).pairs == []
    same = [Candidate("c0", 10, key="k"), Candidate("c1", 10, key="k")]
    assert decide_pairs(same, [[_j("a", [0, 1])] * 3], JudgingConfig()).pairs == []


def test_pairwise_mode_aggregates_like_listwise() -> None:
    import json

    from rsi.judging.pairwise import pairwise_requests, pairwise_schedule, parse_pairwise

    texts = ["q=2", "q=0", "q=3", "q=1"]
    shown = pairwise_schedule(4, rounds=1, seed=1)
    assert len(shown) == 12 and len(set(shown)) == 12  # every pair, both orders
    reqs = pairwise_requests("Compare.", "-", texts, shown, 40)
    judgments = []
    for k, req in enumerate(reqs):
        a, b = req.items
        winner, loser = (a, b) if texts[a] > texts[b] else (b, a)
        labels = "ABCD"
        parsed = parse_pairwise(json.dumps({"rationale": "", "ranking": [labels[winner], labels[loser]]}),
                                req.items, 4)
        assert parsed.status == "ok" and parsed.ranking == [winner, loser]
        judgments.append(Judgment(f"p{k}", parsed.ranking, list(req.shown)))
    d = decide_pairs(_cands(4), [judgments], JudgingConfig(length_control=False))
    assert (d.pairs[0].chosen, d.pairs[0].rejected) == (2, 1)


def test_decide_rows_and_position_balance() -> None:
    from rsi.judging.balance import PositionBalance
    from rsi.judging.decide import decide_rows

    cands = [{"id": f"c{i}", "completion": "x" * (i + 1), "procedural_score": None} for i in range(3)]
    level1 = [{"id": "a", "ranking": [0, 1, 2], "presented_order": [0, 1, 2]},
              {"id": "b", "ranking": [0, 2, 1], "presented_order": [1, 0, 2]}]
    d = decide_rows(cands, [level1], JudgingConfig(length_control=False))
    assert d.pairs[0].chosen == 0 and len(d.weights[0]) == 2

    bal = PositionBalance(tolerance=0.1, warmup=10)
    admitted = [bal.admit(0, 4) for _ in range(40)]  # a judge that always prefers the first shown
    assert sum(admitted) <= 10 + 1 and bal.dropped >= 29
    assert bal.admit(2, 4)  # other positions still pass


def test_execution_alone_decides_without_judges() -> None:
    d = decide_pairs(_cands(3, procedural=[0.5, 1.0, 0.0]), [], JudgingConfig())
    assert [(p.chosen, p.rejected, p.origin) for p in d.pairs] == [(1, 2, "procedural")]
    assert decide_pairs(_cands(3), [], JudgingConfig()).pairs == []


def test_length_control_never_cancels_a_two_candidate_pair() -> None:
    # two candidates, judges agree on 0 but evidence is thin; 1 is shorter: still 0 over 1
    d = decide_pairs(_cands(2, lengths=[500, 10]), [[_j("a", [0, 1]), _j("b", [0, 1])]], JudgingConfig())
    assert [(p.chosen, p.rejected) for p in d.pairs] == [(0, 1)]


def test_pairwise_judgement_pairs_share_their_question() -> None:
    """Pairwise judgments answer different questions (which of these two?); a judgement pair must oppose two
    answers to the same one, so DPO sees one prompt with two answers."""
    level1 = [_j("ab", [0, 1], [0, 1]), _j("ba", [1, 0], [1, 0]), _j("ac", [0, 2], [0, 2]),
              _j("ca", [0, 2], [2, 0]), _j("bc", [1, 2], [1, 2]), _j("cb", [2, 1], [2, 1])]
    # the meta-judges like the judgments that put candidate 0 or 1 over 2, and "ba" least
    level2 = [_j("m1", [0, 2, 3, 4, 5, 1]), _j("m2", [2, 0, 4, 3, 5, 1])]
    d = decide_pairs(_cands(3), [level1, level2], JudgingConfig(min_margin=0.0))
    judgement_pairs = [p for p in d.pairs if p.level == 1]
    assert judgement_pairs
    for p in judgement_pairs:
        assert sorted(level1[p.chosen].presented) == sorted(level1[p.rejected].presented)
    assert any((p.chosen, p.rejected) == (0, 1) for p in judgement_pairs)  # ab over ba, as the meta-judges say


def test_three_levels_weight_every_judgment() -> None:
    level1 = [_j("a", [0, 1, 2]), _j("b", [2, 1, 0]), _j("c", [0, 2, 1])]
    level2 = [_j("m1", [0, 2, 1]), _j("m2", [2, 0, 1])]  # both meta-judges put "b" last
    level3 = [_j("t1", [0, 1]), _j("t2", [0, 1])]
    d = decide_pairs(_cands(3), [level1, level2, level3], JudgingConfig(min_margin=0.0))
    assert [len(w) for w in d.weights] == [3, 2, 2]
    assert d.weights[0][1] < min(d.weights[0][0], d.weights[0][2])
    assert {p.level for p in d.pairs} == {0, 1, 2}
    assert [(p.chosen, p.rejected) for p in d.pairs if p.level == 2] == [(0, 1)]


def test_balance_pairs_keeps_performance_pairs_and_resumes() -> None:
    from rsi.judging.balance import PositionBalance, balance_pairs, restore_balances

    def make() -> PositionBalance:
        return PositionBalance(tolerance=0.1, warmup=4)

    first = [{"step": "rank_tasks", "chosen_first_shown": 0, "shown_items": 2} for _ in range(20)]
    perf = [{"step": "create_task", "chosen_first_shown": None, "shown_items": None}] * 3
    balances: dict = {}
    kept, dropped = balance_pairs(first + perf, balances, make)
    assert kept[-3:] == perf and 4 <= len(kept) - 3 <= 6
    assert dropped["rank_tasks"] == 20 - (len(kept) - 3)
    # a resumed pass starts from the committed counts, so it keeps refusing position 0
    again = restore_balances({"rank_tasks": {0: len(kept) - 3}}, dict(dropped), make)
    assert again["rank_tasks"].dropped == dropped["rank_tasks"]
    kept2, _ = balance_pairs(first[:5], again, make)
    assert kept2 == []
    kept3, _ = balance_pairs([{"step": "rank_tasks", "chosen_first_shown": 1, "shown_items": 2}], again, make)
    assert len(kept3) == 1
