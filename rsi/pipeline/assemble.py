"""Turn one finished candidate set into rows of the three corpus tables."""

from __future__ import annotations

import json
from typing import Any

from rsi.corpus.ids import content_id
from rsi.judging.pairs import best_vs_worst, trust_weights
from rsi.tasks import programming as prog


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _judgment_row(j: dict[str, Any], s: dict[str, Any], step: str, weight: float) -> dict[str, Any]:
    return {
        "id": j["id"], "iteration": int(s["iteration"]), "judge_model_version": j["model_version"],
        "level": j["level"], "family": prog.FAMILY, "step": step, "task_id": str(s["task_id"]),
        "candidate_ids": j["candidate_ids"], "presented_order": j["presented_order"], "ranking": j["ranking"],
        "rationale": j["rationale"], "parse_status": j["parse_status"], "parse_error": j["parse_error"],
        "raw_text": j["raw_text"], "prompt": j["prompt"], "temperature": j["temperature"], "seed": j["seed"],
        "weight": weight,
    }


def _pair_row(s: dict[str, Any], step: str, level: int, prompt: list[dict[str, str]], chosen: dict[str, Any],
              rejected: dict[str, Any], text_key: str, margin: float, sources: list[str]) -> dict[str, Any]:
    return {
        "id": content_id("preference", chosen=chosen["id"], rejected=rejected["id"], step=step, level=level),
        "iteration": int(s["iteration"]), "family": prog.FAMILY, "step": step, "level": level,
        "prompt": prompt, "chosen": _assistant(chosen[text_key]), "rejected": _assistant(rejected[text_key]),
        "chosen_id": chosen["id"], "rejected_id": rejected["id"], "margin": margin, "weight": 1.0,
        "source_ids": sources,
    }


def assemble_set(s: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    cands = json.loads(s["candidates"])
    level1 = json.loads(s["judgments"])
    level2 = json.loads(s["meta_judgments"])

    performances = [{
        "id": c["id"], "iteration": int(s["iteration"]), "model_version": c["model_version"],
        "family": prog.FAMILY, "step": prog.STEP_CREATE, "task_id": str(s["task_id"]), "domain": str(s["domain"]),
        "prompt": c["prompt"], "completion": c["completion"], "parse_status": c["parse_status"],
        "parse_error": c["parse_error"], "parsed": json.dumps(c["parsed"]) if c["parsed"] is not None else None,
        "procedural_score": None, "temperature": c["temperature"], "seed": c["seed"],
        "num_prompt_tokens": c["num_prompt_tokens"], "num_tokens": c["num_tokens"],
        "finish_reason": c["finish_reason"],
    } for c in cands]

    meta_rankings = [m["ranking"] for m in level2 if m["ranking"] is not None]
    weights = trust_weights(len(level1), [j["ranking"] is not None for j in level1], meta_rankings)
    judgments = [_judgment_row(j, s, prog.STEP_RANK, w) for j, w in zip(level1, weights)]
    judgments += [_judgment_row(m, s, prog.STEP_META, 1.0) for m in level2]

    preferences = []
    task_pair = best_vs_worst([j["ranking"] for j in level1], weights, len(cands))
    if task_pair:
        best, worst = cands[task_pair.chosen], cands[task_pair.rejected]
        preferences.append(_pair_row(s, prog.STEP_CREATE, 1, best["prompt"], best, worst, "completion",
                                     task_pair.margin, [level1[i]["id"] for i in task_pair.sources]))
    judge_pair = best_vs_worst(meta_rankings, [1.0] * len(meta_rankings), len(level1))
    if judge_pair:
        # Labels are stable across permutations, so the better judgment is a valid answer to the worse
        # judgment's prompt: the pair shares that prompt, as DPO needs.
        best, worst = level1[judge_pair.chosen], level1[judge_pair.rejected]
        preferences.append(_pair_row(s, prog.STEP_RANK, 2, worst["prompt"], best, worst, "raw_text",
                                     judge_pair.margin, [m["id"] for m in level2 if m["ranking"] is not None]))
    return {"performances": performances, "judgments": judgments, "preferences": preferences}
