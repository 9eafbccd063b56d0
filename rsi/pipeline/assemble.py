"""Turn one finished chain into rows of the three corpus tables, and its preference pairs.

Pairs come from every judged step: for a generated step, the best against the worst candidate of each set
(procedural scores decide where they discriminate, the judges otherwise); for a ranking step, the better
against the worse ranking of a set (agreement with execution decides where it exists, the meta-judges
otherwise).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from rsi.corpus.ids import content_id
from rsi.judging.decide import Decision, decide_rows
from rsi.judging.decide import Pair as JudgedPair
from rsi.pipeline.steps import judgment_levels
from rsi.tasks.family import Family, Generate, Rank

Row = dict[str, Any]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _pair_weight(p: JudgedPair) -> float:
    """Sampling weight of a pair in DPO: execution truth is certain; a judges' pair counts by its margin."""
    return 1.0 if p.origin == "procedural" else p.margin


def _first_shown_position(judgment: Row) -> int | None:
    """Where the item a judgment put first sat in the order it was shown (0 = first)."""
    ranking, shown = judgment.get("ranking"), list(judgment.get("presented_order") or [])
    return shown.index(ranking[0]) if ranking and ranking[0] in shown else None


def _pair_row(chain_row: Row, family: str, step: str, level: int, prompt: list, chosen_id: str, chosen_text: str,
              rejected_id: str, rejected_text: str, margin: float, sources: list[str], weight: float = 1.0) -> Row:
    return {
        "id": content_id("preference", chosen=chosen_id, rejected=rejected_id, step=step, level=level),
        "iteration": int(chain_row["iteration"]), "family": family, "step": step, "level": level,
        "prompt": prompt, "chosen": _assistant(chosen_text), "rejected": _assistant(rejected_text),
        "chosen_id": chosen_id, "rejected_id": rejected_id, "margin": margin, "weight": weight,
        "source_ids": sources, "chosen_first_shown": None, "shown_items": None,
    }


def assemble_chain(chain_row: Row, family: Family, judging: Any = None) -> dict[str, list[Row]]:
    """`judging`: the run's JudgingConfig (margin threshold, length control, BT settings); defaults if None."""
    chain = json.loads(chain_row["state"])
    items, judgments = chain["items"], chain["judgments"]
    by_set: dict[str, list[Row]] = defaultdict(list)
    for i in items:
        by_set[i["set_id"]].append(i)
    j_by_set: dict[str, list[Row]] = defaultdict(list)
    for j in judgments:
        j_by_set[j["set_id"]].append(j)

    weights: dict[str, float] = {}
    preferences: list[Row] = []
    rank_of = {o.of: o.step for o in family.ops if isinstance(o, Rank)}
    item_by_id = {i["id"]: i for i in items}
    decisions: dict[str, Decision] = {}
    for set_id, level1 in j_by_set.items():
        if level1[0]["level"] != 1:
            continue
        # candidates in the canonical order the judges' indices refer to
        cands = [item_by_id[c] for c in level1[0]["candidate_ids"] if c in item_by_id]
        if len(cands) != len(level1[0]["candidate_ids"]):
            continue
        levels = judgment_levels(judgments, level1)
        d = decide_rows(cands, levels, judging)
        decisions[set_id] = d
        for lvl, judged in enumerate(levels):
            weights.update({j["id"]: w for j, w in zip(judged, d.weights[lvl])})
        # Judgement pairs at every level: execution truth first, the judges one level up otherwise.
        for p in (p for p in d.pairs if p.level >= 1):
            judged = levels[p.level - 1]
            good, bad = judged[p.chosen], judged[p.rejected]
            # Labels are stable across permutations, so the better ranking is a valid answer to the worse
            # ranking's prompt: the pair shares that prompt, as DPO needs (decide pairs only judgments that
            # were shown the same items).
            row = _pair_row(chain_row, family.name, good["step"], p.level + 1, bad["prompt"], good["id"],
                            good["raw_text"], bad["id"], bad["raw_text"], p.margin, p.source_ids, _pair_weight(p))
            row["chosen_first_shown"] = _first_shown_position(good)
            row["shown_items"] = len(good["presented_order"])
            preferences.append(row)

    for op in family.ops:
        if not isinstance(op, Generate):
            continue
        for set_id, cands in by_set.items():
            if cands[0]["step"] != op.step or len(cands) < 2:
                continue
            d = decisions.get(set_id)
            if d is None or rank_of.get(op.step) is None:
                d = decide_rows(cands, [], judging)  # no judges: execution alone, where it discriminates
                order = cands
            else:
                order = [item_by_id[c] for c in j_by_set[set_id][0]["candidate_ids"]]
            for p in (p for p in d.pairs if p.level == 0):
                good, bad = order[p.chosen], order[p.rejected]
                preferences.append(_pair_row(chain_row, family.name, op.step, 1, good["prompt"], good["id"],
                                             good["completion"], bad["id"], bad["completion"], p.margin,
                                             p.source_ids, _pair_weight(p)))

    base = {"iteration": int(chain_row["iteration"]), "family": family.name, "task_id": str(chain_row["task_id"])}
    performances = [base | {
        "id": i["id"], "model_version": i["model_version"], "step": i["step"], "seed_text": chain["seed"],
        "set_id": i["set_id"], "parent_id": i["parent_id"], "template_hash": i["template_hash"],
        "prompt": i["prompt"], "completion": i["completion"], "parse_status": i["parse_status"],
        "parse_error": i["parse_error"], "parsed": json.dumps(i["parsed"]) if i["parsed"] is not None else None,
        "procedural_score": i["procedural_score"],
        "procedural_detail": json.dumps(i["procedural_detail"]) if i["procedural_detail"] is not None else None,
        "kept": bool(i["kept"]), "temperature": i["temperature"], "seed": i["seed"],
        "num_prompt_tokens": i["num_prompt_tokens"], "num_tokens": i["num_tokens"],
        "finish_reason": i["finish_reason"],
    } for i in items]
    judgment_rows = [base | {
        "id": j["id"], "judge_model_version": j["model_version"], "level": j["level"], "step": j["step"],
        "set_id": j["set_id"], "template_hash": j["template_hash"], "candidate_ids": j["candidate_ids"],
        "presented_order": j["presented_order"], "ranking": j["ranking"], "rationale": j["rationale"],
        "parse_status": j["parse_status"], "parse_error": j["parse_error"], "raw_text": j["raw_text"],
        "prompt": j["prompt"], "temperature": j["temperature"], "seed": j["seed"],
        "weight": weights.get(j["id"], 1.0),
    } for j in judgments]
    return {"performances": performances, "judgments": judgment_rows, "preferences": preferences}
