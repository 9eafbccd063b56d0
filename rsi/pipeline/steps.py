"""Ray Data stages, one per family operation. A row is one chain (a seed and everything grown from it); its
state travels as a JSON string, since Arrow cannot infer one stable type for nested, sometimes-empty records.
Each stage sends one batched request list per batch to the engine through its actor handle."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import numpy as np

from rsi.corpus.ids import content_id, derived_seed
from rsi.judging.decide import decide_rows
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages, ranking_schema
from rsi.tasks.family import Chain, Check, Family, Generate, Item, MetaRank, Rank, Select
from rsi.tasks.templates import render, split_rubric

SYSTEM = "You are a skilled, careful assistant."
JUDGE_SYSTEM = "You are a careful, impartial judge."


def _generate(engine: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    wire = [{k: r[k] for k in ("messages", "max_tokens", "temperature", "seed", "json_schema")} for r in requests]
    return ray.get(engine.generate.remote(wire)) if wire else []


def _rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))]


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def sets_of(items: list[Item], step: str) -> dict[str, list[Item]]:
    """Candidate sets of a step, in generation order: items sharing a parent."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for i in items:
        if i["step"] == step:
            groups[i["set_id"]].append(i)
    return groups


def run_op(batch: dict[str, np.ndarray], *, family: Family, op_index: int, fam_cfg: dict[str, Any],
           judging: dict[str, Any], engine: Any, judge: Any = None, sandbox: Any = None) -> dict[str, list[Any]]:
    """The map_batches entry: decode chains, apply the family's op `op_index`, encode them again.
    `engine` serves the policy's steps, `judge` the rankings (the same pool when the policy judges itself)."""
    judge = judge if judge is not None else engine
    fam = family
    op = fam.ops[op_index]
    rows = _rows(batch)
    chains = [json.loads(r["state"]) for r in rows]
    if isinstance(op, Generate):
        generate_step(chains, rows, op, fam, fam_cfg, engine)
    elif isinstance(op, Rank):
        rank_step(chains, rows, op, fam, judging, judge)
    elif isinstance(op, MetaRank):
        meta_rank_step(chains, rows, op, fam, judging, judge)
    elif isinstance(op, Select):
        rank_name = next((o.step for o in fam.ops if isinstance(o, Rank) and o.of == op.of), None)
        for chain in chains:
            select_step(chain, op, fam_cfg, rank_name)
    elif isinstance(op, Check):
        def runner(jobs: list[dict]) -> list[dict]:
            if sandbox is None:
                raise RuntimeError(f"step {op.name} executes code but the run has no sandbox pool")
            return [v.to_dict() for v in sandbox.run(jobs)]

        for chain in chains:
            op.run(chain, runner)
    for row, chain in zip(rows, chains):
        row["state"] = json.dumps(chain)
    return _columns(rows)


def generate_step(chains: list[Chain], rows: list[dict[str, Any]], op: Generate, fam: Family,
                  fam_cfg: dict[str, Any], engine: Any) -> None:
    requests: list[dict[str, Any]] = []
    for chain, row in zip(chains, rows):
        parents: list[Item | None] = [None] if op.parent is None else [
            i for i in chain["items"] if i["step"] == op.parent and i["kept"]]
        for parent in parents:
            text, digest = render(fam, op.template, **op.variables(chain["seed"], parent))
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
            set_id = content_id("set", chain=str(row["task_id"]), step=op.step,
                                parent=parent["id"] if parent else None)
            for k in range(int(fam_cfg[op.count])):
                requests.append({
                    "messages": messages, "max_tokens": int(fam_cfg[op.max_tokens]),
                    "temperature": float(fam_cfg["temperature"]), "seed": derived_seed(set_id, k),
                    "json_schema": op.schema, "chain": chain, "parent": parent, "set_id": set_id,
                    "template_hash": digest,
                })
    for req, out in zip(requests, _generate(engine, requests)):
        parsed = op.parse(out["text"], req["parent"])
        req["chain"]["items"].append({
            "id": content_id("performance", set_id=req["set_id"], seed=req["seed"], prompt=req["messages"],
                             version=out["model_version"]),
            "step": op.step, "parent_id": req["parent"]["id"] if req["parent"] else None, "set_id": req["set_id"],
            "prompt": req["messages"], "completion": out["text"], "parse_status": parsed.status,
            "parse_error": parsed.error, "parsed": parsed.value if parsed.ok else None, "seed": req["seed"],
            "temperature": req["temperature"], "num_prompt_tokens": out["num_prompt_tokens"],
            "num_tokens": out["num_tokens"], "finish_reason": out["finish_reason"],
            "model_version": out["model_version"], "template_hash": req["template_hash"],
            "procedural_score": None, "procedural_detail": None, "kept": parsed.ok,
        })


def _ranking_requests(set_key: str, level: int, texts: list[str], labels: list[str], instruction: str,
                      rubric: str, digest: str, rankings: int, judging: dict[str, Any]) -> list[dict[str, Any]]:
    """One request per permutation: the first shows the canonical order, the rest are seeded shuffles."""
    out = []
    for r in range(rankings):
        order = list(range(len(texts)))
        if r > 0:
            random.Random(derived_seed(set_key, level, "order", r)).shuffle(order)
        messages = ranking_messages(instruction, rubric, texts, labels, order, judging["rationale_chars"])
        messages[0]["content"] = JUDGE_SYSTEM
        out.append({"messages": messages, "max_tokens": judging["max_tokens"],
                    "temperature": judging["temperature"], "seed": derived_seed(set_key, level, r),
                    "json_schema": ranking_schema(labels, judging["rationale_chars"]), "order": order,
                    "labels": labels, "template_hash": digest})
    return out


def _record_judgments(engine: Any, requests: list[dict[str, Any]]) -> None:
    for req, out in zip(requests, _generate(engine, requests)):
        parsed = parse_ranking(out["text"], req["labels"])
        req["chain"]["judgments"].append({
            "id": content_id("judgment", prompt=req["messages"], seed=req["seed"], version=out["model_version"],
                             candidates=req["candidate_ids"], level=req["level"]),
            "step": req["step"], "level": req["level"], "set_id": req["set_id"],
            "candidate_ids": req["candidate_ids"], "presented_order": req["order"], "ranking": parsed.ranking,
            "rationale": parsed.rationale, "parse_status": parsed.status, "parse_error": parsed.error,
            "raw_text": out["text"], "prompt": req["messages"], "seed": req["seed"],
            "temperature": req["temperature"], "model_version": out["model_version"],
            "template_hash": req["template_hash"], "num_tokens": out["num_tokens"],
        })


def rank_step(chains: list[Chain], rows: list[dict[str, Any]], op: Rank, fam: Family, judging: dict[str, Any],
              engine: Any) -> None:
    gen = fam.op(op.of)
    instruction, rubric, digest = split_rubric(fam, op.template)
    requests = []
    for chain in chains:
        for set_id, items in sets_of(chain["items"], op.of).items():
            if len(items) < 2:
                continue
            for req in _ranking_requests(set_id, 1, [gen.render(i) for i in items], labels_for(len(items)),
                                         instruction, rubric, digest, judging["rankings_per_set"], judging):
                requests.append(req | {"chain": chain, "step": op.step, "level": 1, "set_id": set_id,
                                       "candidate_ids": [i["id"] for i in items]})
    _record_judgments(engine, requests)


def describe_judgment(j: dict[str, Any], candidate_labels: list[str]) -> str:
    if j["ranking"] is None:
        return f"(an invalid answer, shown as written)\n{j['raw_text']}"
    return f"Order: {' > '.join(candidate_labels[i] for i in j['ranking'])}\nRationale: {j['rationale']}"


def meta_rank_step(chains: list[Chain], rows: list[dict[str, Any]], op: MetaRank, fam: Family,
                   judging: dict[str, Any], engine: Any) -> None:
    rank_op = fam.op(op.of)
    gen = fam.op(rank_op.of)
    instruction, rubric, digest = split_rubric(fam, op.template)
    requests = []
    for chain in chains:
        by_id = {i["id"]: i for i in chain["items"]}
        level1: dict[str, list[dict]] = defaultdict(list)
        for j in chain["judgments"]:
            if j["step"] == op.of:
                level1[j["set_id"]].append(j)
        for set_id, judged in level1.items():
            if len(judged) < 2:
                continue
            cand_labels = labels_for(len(judged[0]["candidate_ids"]))
            shown = "\n\n".join(f'<item label="{lab}">\n{gen.render(by_id[cid])}\n</item>'
                                for lab, cid in zip(cand_labels, judged[0]["candidate_ids"]))
            context = f"{instruction}\n\nThe items that were judged:\n{shown}\n\nThe judgements:"
            meta_set = content_id("rankings", set_id=set_id, step=op.of)
            for req in _ranking_requests(meta_set, 2, [describe_judgment(j, cand_labels) for j in judged],
                                         labels_for(len(judged), prefix="J"), context, rubric, digest,
                                         judging["meta_rankings_per_set"], judging):
                requests.append(req | {"chain": chain, "step": op.step, "level": 2, "set_id": meta_set,
                                       "candidate_ids": [j["id"] for j in judged]})
    _record_judgments(engine, requests)


def aggregate_order(items: list[Item], judgments: list[dict[str, Any]], rank_step_name: str | None) -> list[int]:
    """Indices of `items` (one candidate set) best first: procedural score where it exists, then the judges'
    trust-weighted Bradley–Terry strength (the same aggregate the pairs come from), then generation order."""
    n = len(items)
    ids = [i["id"] for i in items]
    level1 = [j for j in judgments if j["step"] == rank_step_name and j["candidate_ids"] == ids]
    level2 = [j for j in judgments if j["level"] == 2 and j["candidate_ids"] == [x["id"] for x in level1]]
    judge = decide_rows(items, [level1, level2] if level2 else [level1]).scores[0] if level1 else [0.0] * n
    proc = [i["procedural_score"] if i["procedural_score"] is not None else -1.0 for i in items]
    return sorted(range(n), key=lambda k: (-proc[k], -judge[k], k))


def select_step(chain: Chain, op: Select, fam_cfg: dict[str, Any], rank_name: str | None) -> None:
    keep = int(fam_cfg[op.keep])
    for items in sets_of(chain["items"], op.of).values():
        order = [k for k in aggregate_order(items, chain["judgments"], rank_name) if items[k]["parse_status"] == "ok"]
        chosen = set(order[:keep])
        for k, item in enumerate(items):
            item["kept"] = k in chosen
