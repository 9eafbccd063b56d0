"""Ray Data stages of one iteration. One row is one candidate set (a domain's N candidates) that flows
generate → rank (level 1) → meta-rank (level 2); each stage sends one batched request list to an engine
actor through its handle. Nested results travel as JSON strings: Arrow cannot infer a stable type for
lists of mixed, sometimes-empty records across batches."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np

from rsi.corpus.ids import content_id, derived_seed
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages, ranking_schema
from rsi.tasks import programming as prog


def _call_engine(engine: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    return ray.get(engine.generate.remote(requests))


def _rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))]


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in rows[0]}


def generate_candidates(batch: dict[str, np.ndarray], *, engine: Any, samples: int, max_tokens: int,
                        temperature: float) -> dict[str, list[Any]]:
    sets = _rows(batch)
    requests, owners = [], []
    for s in sets:
        messages = prog.create_task_messages(str(s["domain"]))
        for k in range(samples):
            seed = derived_seed(s["task_id"], "candidate", k)
            requests.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                             "seed": seed, "json_schema": prog.TASK_SCHEMA})
            owners.append(s)
    completions = _call_engine(engine, requests)
    per_set: dict[str, list[dict[str, Any]]] = {str(s["task_id"]): [] for s in sets}
    for req, owner, out in zip(requests, owners, completions):
        status, parsed, error = prog.parse_task(out["text"])
        cid = content_id("performance", prompt=req["messages"], seed=req["seed"], version=out["model_version"],
                         task_id=str(owner["task_id"]))
        per_set[str(owner["task_id"])].append({
            "id": cid, "prompt": req["messages"], "completion": out["text"], "parse_status": status,
            "parse_error": error, "parsed": parsed, "seed": req["seed"], "temperature": temperature,
            "num_prompt_tokens": out["num_prompt_tokens"], "num_tokens": out["num_tokens"],
            "finish_reason": out["finish_reason"], "model_version": out["model_version"],
        })
    for s in sets:
        s["candidates"] = json.dumps(per_set[str(s["task_id"])])
    return _columns(sets)


def _rank_requests(task_id: str, level: int, items: list[str], labels: list[str], instruction: str,
                   rubric: str, rankings: int, max_tokens: int, temperature: float,
                   rationale_chars: int) -> list[dict[str, Any]]:
    """One request per permutation; the first shows the canonical order, the rest are seeded shuffles."""
    requests = []
    for r in range(rankings):
        order = list(range(len(items)))
        if r > 0:
            random.Random(derived_seed(task_id, level, "order", r)).shuffle(order)
        requests.append({
            "messages": ranking_messages(instruction, rubric, items, labels, order, rationale_chars),
            "max_tokens": max_tokens, "temperature": temperature, "seed": derived_seed(task_id, level, r),
            "json_schema": ranking_schema(labels, rationale_chars), "order": order,
        })
    return requests


def _judge(engine: Any, sets: list[dict[str, Any]], requests_per_set: list[list[dict[str, Any]]],
           candidate_ids: list[list[str]], labels: list[list[str]], level: int) -> list[list[dict[str, Any]]]:
    flat = [(i, r) for i, reqs in enumerate(requests_per_set) for r in reqs]
    wire = [{k: v for k, v in r.items() if k != "order"} for _, r in flat]
    completions = _call_engine(engine, wire)
    results: list[list[dict[str, Any]]] = [[] for _ in sets]
    for (i, req), out in zip(flat, completions):
        parsed = parse_ranking(out["text"], labels[i])
        jid = content_id("judgment", prompt=req["messages"], seed=req["seed"], version=out["model_version"],
                         candidates=candidate_ids[i], level=level)
        results[i].append({
            "id": jid, "level": level, "candidate_ids": candidate_ids[i], "presented_order": req["order"],
            "ranking": parsed.ranking, "rationale": parsed.rationale, "parse_status": parsed.status,
            "parse_error": parsed.error, "raw_text": out["text"], "prompt": req["messages"],
            "seed": req["seed"], "temperature": req["temperature"], "model_version": out["model_version"],
        })
    return results


def rank_candidates(batch: dict[str, np.ndarray], *, engine: Any, rankings: int, max_tokens: int,
                    temperature: float, rationale_chars: int) -> dict[str, list[Any]]:
    sets = _rows(batch)
    cands = [json.loads(s["candidates"]) for s in sets]
    labels = [labels_for(len(c)) for c in cands]
    requests = [
        _rank_requests(str(s["task_id"]), 1, [prog.render_task(x["parsed"], x["completion"]) for x in c], lab,
                       prog.RANK_INSTRUCTION, prog.RANK_RUBRIC, rankings, max_tokens, temperature,
                       rationale_chars)
        for s, c, lab in zip(sets, cands, labels)
    ]
    results = _judge(engine, sets, requests, [[x["id"] for x in c] for c in cands], labels, level=1)
    for s, r in zip(sets, results):
        s["judgments"] = json.dumps(r)
    return _columns(sets)


def _describe_judgment(j: dict[str, Any], candidate_labels: list[str]) -> str:
    if j["ranking"] is None:
        return f"(an invalid answer, shown as written)\n{j['raw_text']}"
    order = " > ".join(candidate_labels[i] for i in j["ranking"])
    return f"Order: {order}\nRationale: {j['rationale']}"


def meta_rank(batch: dict[str, np.ndarray], *, engine: Any, rankings: int, max_tokens: int,
              temperature: float, rationale_chars: int) -> dict[str, list[Any]]:
    sets = _rows(batch)
    requests, ids, labels = [], [], []
    for s in sets:
        cands = json.loads(s["candidates"])
        judged = json.loads(s["judgments"])
        cand_labels = labels_for(len(cands))
        tasks = "\n\n".join(f"<task label=\"{lab}\">\n{prog.render_task(c['parsed'], c['completion'])}\n</task>"
                            for lab, c in zip(cand_labels, cands))
        instruction = f"{prog.META_INSTRUCTION}\n\nThe tasks:\n{tasks}\n\nThe judgements:"
        lab = labels_for(len(judged), prefix="J")
        labels.append(lab)
        ids.append([j["id"] for j in judged])
        requests.append(_rank_requests(str(s["task_id"]), 2, [_describe_judgment(j, cand_labels) for j in judged],
                                       lab, instruction, prog.META_RUBRIC, rankings, max_tokens, temperature,
                                       rationale_chars))
    results = _judge(engine, sets, requests, ids, labels, level=2)
    for s, r in zip(sets, results):
        s["meta_judgments"] = json.dumps(r)
    return _columns(sets)
