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
from rsi.judging.pairs import Pair, best_vs_worst, trust_weights
from rsi.tasks.family import Family, Generate, Rank

Row = dict[str, Any]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def pairwise_agreement(ranking: list[int], scores: list[float]) -> float:
    """Share of pairs with different scores that `ranking` (best first) orders the same way."""
    pos = {c: p for p, c in enumerate(ranking)}
    pairs = [(a, b) for a in range(len(scores)) for b in range(a + 1, len(scores)) if scores[a] != scores[b]]
    if not pairs:
        return 0.5
    return sum((pos[a] < pos[b]) == (scores[a] > scores[b]) for a, b in pairs) / len(pairs)


def _procedural_pair(items: list[Row]) -> Pair | None:
    scores = [i["procedural_score"] for i in items]
    if any(s is None for s in scores) or max(scores) == min(scores):
        return None
    best = max(range(len(items)), key=lambda k: (scores[k], -k))
    worst = min(range(len(items)), key=lambda k: (scores[k], k))
    return Pair(best, worst, float(scores[best] - scores[worst]), [])


def _pair_row(chain_row: Row, family: str, step: str, level: int, prompt: list, chosen_id: str, chosen_text: str,
              rejected_id: str, rejected_text: str, margin: float, sources: list[str]) -> Row:
    return {
        "id": content_id("preference", chosen=chosen_id, rejected=rejected_id, step=step, level=level),
        "iteration": int(chain_row["iteration"]), "family": family, "step": step, "level": level,
        "prompt": prompt, "chosen": _assistant(chosen_text), "rejected": _assistant(rejected_text),
        "chosen_id": chosen_id, "rejected_id": rejected_id, "margin": margin, "weight": 1.0,
        "source_ids": sources,
    }


def assemble_chain(chain_row: Row, family: Family) -> dict[str, list[Row]]:
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
    for set_id, level1 in j_by_set.items():
        if level1[0]["level"] != 1:
            continue
        meta_set = content_id("rankings", set_id=set_id, step=level1[0]["step"])
        meta = [m["ranking"] for m in j_by_set.get(meta_set, []) if m["ranking"] is not None]
        for j, w in zip(level1, trust_weights(len(level1), [j["ranking"] is not None for j in level1], meta)):
            weights[j["id"]] = w
        cands = by_set.get(set_id, [])
        # Judgement pairs: execution truth first, the meta-judges otherwise.
        valid = [j for j in level1 if j["ranking"] is not None]
        pair, sources = None, []
        scores = [c["procedural_score"] for c in cands]
        if len(valid) >= 2 and cands and all(s is not None for s in scores) and max(scores) != min(scores):
            agree = [pairwise_agreement(j["ranking"], scores) for j in valid]
            hi, lo = max(range(len(valid)), key=lambda k: agree[k]), min(range(len(valid)), key=lambda k: agree[k])
            if agree[hi] > agree[lo]:
                pair = (valid[hi], valid[lo], agree[hi] - agree[lo])
        elif meta:
            p = best_vs_worst(meta, [1.0] * len(meta), len(level1))
            if p:
                pair = (level1[p.chosen], level1[p.rejected], p.margin)
                sources = [m["id"] for m in j_by_set[meta_set] if m["ranking"] is not None]
        if pair:
            good, bad, margin = pair
            # Labels are stable across permutations, so the better ranking is a valid answer to the worse
            # ranking's prompt: the pair shares that prompt, as DPO needs.
            preferences.append(_pair_row(chain_row, family.name, good["step"], 2, bad["prompt"], good["id"],
                                         good["raw_text"], bad["id"], bad["raw_text"], margin, sources))

    for op in family.ops:
        if not isinstance(op, Generate):
            continue
        for set_id, cands in by_set.items():
            if cands[0]["step"] != op.step or len(cands) < 2:
                continue
            pair = _procedural_pair(cands)
            if pair is None:
                level1 = [j for j in j_by_set.get(set_id, []) if j["step"] == rank_of.get(op.step)]
                pair = best_vs_worst([j["ranking"] for j in level1], [weights.get(j["id"], 1.0) for j in level1],
                                     len(cands))
                if pair:
                    pair.sources = [level1[k]["id"] for k in pair.sources]
            if pair:
                good, bad = cands[pair.chosen], cands[pair.rejected]
                preferences.append(_pair_row(chain_row, family.name, op.step, 1, good["prompt"], good["id"],
                                             good["completion"], bad["id"], bad["completion"], pair.margin,
                                             pair.sources))

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
