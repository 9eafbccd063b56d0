"""Ray Data stages, one per family operation. A row is one chain (a seed and everything grown from it); its
state travels as a JSON string, since Arrow cannot infer one stable type for nested, sometimes-empty records.
Each stage sends one batched request list per batch to the engine through its actor handle."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from rsi.corpus.ids import content_id, derived_seed
from rsi.judging.config import JudgingConfig
from rsi.judging.pairwise import pairwise_requests, pairwise_schedule, parse_pairwise
from rsi.judging.ranking import labels_for, parse_ranking, ranking_messages, ranking_schema
from rsi.pipeline.decisions import (
    decide_set,
    forget_decisions,
    items_by_set,
    judgment_levels,
    judgments_by_set,
    meta_set_id,
)
from rsi.tasks.family import Chain, Check, Derive, Family, FamilyConfig, Generate, Item, MetaRank, Rank, Select
from rsi.tasks.templates import JUDGE_SYSTEM, SYSTEM, render, split_rubric

if TYPE_CHECKING:
    from rsi.inference.api import PoolHandle
    from rsi.sandbox.pool import SandboxPool


def _generate(engine: PoolHandle, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    wire = [{k: r[k] for k in ("messages", "max_tokens", "temperature", "seed", "json_schema")} for r in requests]
    return ray.get(engine.generate.remote(wire)) if wire else []


def _rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))]


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def run_op(batch: dict[str, np.ndarray], *, family: Family, op_index: int, fam_cfg: FamilyConfig,
           judging: JudgingConfig, engine: PoolHandle, judge: PoolHandle,
           sandbox: SandboxPool | None = None) -> dict[str, list[Any]]:
    """The map_batches entry: decode chains, apply the family's op `op_index`, encode them again.
    `engine` serves the policy's steps, `judge` the rankings (the same pool when the policy judges itself)."""
    op = family.ops[op_index]
    rows = _rows(batch)
    chains = [json.loads(r["state"]) for r in rows]
    if isinstance(op, Generate):
        generate_step(chains, rows, op, family, fam_cfg, engine)
    elif isinstance(op, Rank):
        rank_step(chains, op, family, judging, judge)
    elif isinstance(op, MetaRank):
        meta_rank_step(chains, op, family, judging, judge)
    elif isinstance(op, Select):
        for chain in chains:
            select_step(chain, op, fam_cfg, judging)
    elif isinstance(op, (Check, Derive)):
        if op.needs_sandbox and sandbox is None:
            name = op.name if isinstance(op, Check) else op.step
            raise RuntimeError(f"step {name} executes code but the run has no sandbox pool")
        run_jobs = sandbox.run_dicts if sandbox is not None else _no_sandbox
        for chain in chains:
            if isinstance(op, Derive):
                op.run(chain, run_jobs, fam_cfg)
            else:
                op.run(chain, run_jobs)
            forget_decisions(chain)
    for row, chain in zip(rows, chains):
        row["state"] = json.dumps(chain)
    return _columns(rows)


def _no_sandbox(jobs: list[dict]) -> list[dict]:
    raise RuntimeError("a check that declared needs_sandbox=False ran code")


def generate_step(chains: list[Chain], rows: list[dict[str, Any]], op: Generate, fam: Family,
                  fam_cfg: FamilyConfig, engine: PoolHandle) -> None:
    requests: list[dict[str, Any]] = []
    for chain, row in zip(chains, rows):
        parents: list[Item | None] = [None] if op.parent is None else [
            i for i in chain["items"] if i["step"] == op.parent and i["kept"]]
        for parent in parents:
            text, digest = render(fam, op.template, **op.variables(chain["seed"], parent))
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
            set_id = content_id("set", chain=str(row["chain_id"]), step=op.step,
                                parent=parent["id"] if parent else None)
            for k in range(int(getattr(fam_cfg, op.count))):
                requests.append({
                    "messages": messages, "max_tokens": int(getattr(fam_cfg, op.max_tokens)),
                    "temperature": float(fam_cfg.temperature), "seed": derived_seed(set_id, k),
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
                      rubric: str, digest: str, rankings: int, judging: JudgingConfig) -> list[dict[str, Any]]:
    """One request per permutation: the first shows the canonical order, the second the reverse (every item at
    the other end, so that a judge who favours a position is caught by the second call, as the judge-accuracy
    evaluation catches it), the rest are seeded shuffles."""
    out = []
    for r in range(rankings):
        order = list(range(len(texts)))
        if r == 1:
            order.reverse()
        elif r > 1:
            random.Random(derived_seed(set_key, level, "order", r)).shuffle(order)
        messages = ranking_messages(instruction, rubric, texts, labels, order, judging.rationale_chars)
        messages[0]["content"] = JUDGE_SYSTEM
        out.append({"messages": messages, "max_tokens": judging.max_tokens,
                    "temperature": judging.temperature, "seed": derived_seed(set_key, level, r),
                    "json_schema": ranking_schema(labels, judging.rationale_chars), "order": order,
                    "labels": labels, "template_hash": digest})
    return out


def _record_judgments(engine: PoolHandle, requests: list[dict[str, Any]]) -> None:
    for req, out in zip(requests, _generate(engine, requests)):
        parsed = parse_pairwise(out["text"], req["items"], len(req["candidate_ids"])) if "items" in req \
            else parse_ranking(out["text"], req["labels"])
        req["chain"]["judgments"].append({
            "id": content_id("judgment", prompt=req["messages"], seed=req["seed"], version=out["model_version"],
                             candidates=req["candidate_ids"], level=req["level"]),
            "step": req["step"], "level": req["level"], "set_id": req["set_id"],
            "candidate_ids": req["candidate_ids"], "presented_order": req["order"], "ranking": parsed.ranking,
            "rationale": parsed.rationale, "parse_status": parsed.status, "parse_error": parsed.error,
            "raw_text": out["text"], "prompt": req["messages"], "seed": req["seed"],
            "temperature": req["temperature"], "judge_model_version": out["model_version"],
            "template_hash": req["template_hash"], "num_tokens": out["num_tokens"],
        })


def _pairwise_requests(set_key: str, texts: list[str], instruction: str, rubric: str, digest: str,
                       judging: JudgingConfig) -> list[dict[str, Any]]:
    """Pairwise mode: every pair of the set, shown both ways (`rankings_per_set` // 2 rounds of each order, at
    least one), so position bias cancels in the aggregate and is measured. Candidates keep their set labels."""
    rounds = max(1, judging.rankings_per_set // 2)
    shown = pairwise_schedule(len(texts), rounds=rounds, seed=derived_seed(set_key, "pairs"))
    out = []
    for r, req in enumerate(pairwise_requests(instruction, rubric, texts, shown, judging.rationale_chars)):
        req.messages[0]["content"] = JUDGE_SYSTEM
        out.append({"messages": req.messages, "max_tokens": judging.max_tokens,
                    "temperature": judging.temperature, "seed": derived_seed(set_key, 1, "pair", r),
                    "json_schema": req.json_schema, "order": list(req.shown), "items": list(req.items),
                    "template_hash": digest})
    return out


def rank_step(chains: list[Chain], op: Rank, fam: Family, judging: JudgingConfig,
              engine: PoolHandle) -> None:
    gen = fam.op(op.of)
    instruction, rubric, digest = split_rubric(fam, op.template)
    requests = []
    for chain in chains:
        for set_id, items in items_by_set(chain["items"], op.of).items():
            if len(items) < 2:
                continue
            texts = [gen.render(i) for i in items]
            if judging.mode == "pairwise":
                reqs = _pairwise_requests(set_id, texts, instruction, rubric, digest, judging)
            else:
                reqs = _ranking_requests(set_id, 1, texts, labels_for(len(items)), instruction, rubric, digest,
                                         judging.rankings_per_set, judging)
            for req in reqs:
                requests.append(req | {"chain": chain, "step": op.step, "level": 1, "set_id": set_id,
                                       "candidate_ids": [i["id"] for i in items]})
    _record_judgments(engine, requests)


def describe_judgment(j: dict[str, Any], candidate_labels: list[str]) -> str:
    if j["ranking"] is None:
        return f"(an invalid answer, shown as written)\n{j['raw_text']}"
    return f"Order: {' > '.join(candidate_labels[i] for i in j['ranking'])}\nRationale: {j['rationale']}"


def meta_rank_step(chains: list[Chain], op: MetaRank, fam: Family,
                   judging: JudgingConfig, engine: PoolHandle) -> None:
    """Levels 2 … `judging.meta_depth`: each ranks the judgments of the level below, on the same set. One level
    at a time, since a level's items are the answers of the one below."""
    rank_op = fam.op(op.of)
    gen = fam.op(rank_op.of)
    instruction, rubric, digest = split_rubric(fam, op.template)
    for level in range(2, judging.meta_depth + 1):
        requests = []
        for chain in chains:
            by_id = {i["id"]: i for i in chain["items"]}
            for level1 in _level1_sets(chain["judgments"], op.of):
                levels = judgment_levels(chain["judgments"], level1)
                if len(levels) != level - 1 or len(levels[-1]) < 2:
                    continue  # this level exists already (resumed chain) or the one below is too small
                judged = levels[-1]
                cand_labels = labels_for(len(level1[0]["candidate_ids"]))
                shown = "\n\n".join(f'<item label="{lab}">\n{gen.render(by_id[cid])}\n</item>'
                                     for lab, cid in zip(cand_labels, level1[0]["candidate_ids"]))
                context = f"{instruction}\n\nThe items that were judged:\n{shown}\n\n"
                for lower in range(1, level - 1):
                    # deeper levels also see the judgments the level below ranked, labelled as it saw them
                    context += f"Judgements of level {lower}:\n" + "\n\n".join(
                        f"[{lab}] {describe_judgment(j, _item_labels(levels, lower, cand_labels))}"
                        for lab, j in zip(_item_labels(levels, lower + 1, cand_labels), levels[lower - 1])) + "\n\n"
                context += "The judgements to rank:"
                meta_set = meta_set_id(judged)
                texts = [describe_judgment(j, _item_labels(levels, level - 1, cand_labels)) for j in judged]
                for req in _ranking_requests(meta_set, level, texts, _item_labels(levels, level, cand_labels),
                                             context, rubric, digest, judging.meta_rankings_per_set, judging):
                    requests.append(req | {"chain": chain, "step": op.step, "level": level, "set_id": meta_set,
                                           "candidate_ids": [j["id"] for j in judged]})
        _record_judgments(engine, requests)


def _item_labels(levels: list[list[dict[str, Any]]], level: int, cand_labels: list[str]) -> list[str]:
    """Labels of the items judged at `level`: candidates at 1 (A, B, …), level-1 judgments at 2 (J1, J2, …),
    level-2 judgments at 3 (JJ1, …)."""
    return cand_labels if level == 1 else labels_for(len(levels[level - 2]), prefix="J" * (level - 1))


def _level1_sets(judgments: list[dict[str, Any]], rank_step: str) -> list[list[dict[str, Any]]]:
    """Level-1 judgments of a Rank step, one list per candidate set."""
    return [js for js in judgments_by_set(judgments).values() if js[0]["step"] == rank_step and js[0]["level"] == 1]


def select_step(chain: Chain, op: Select, fam_cfg: FamilyConfig, judging: JudgingConfig) -> None:
    """Keep the best `keep` parsed candidates of each set: procedural score where it exists, then the judges'
    trust-weighted Bradley–Terry strength (the decision the set's pairs come from), then generation order."""
    keep = int(getattr(fam_cfg, op.keep))
    for set_id, items in items_by_set(chain["items"], op.of).items():
        scores = decide_set(chain, set_id, judging)[2].scores
        strength = scores[0] if scores else [0.0] * len(items)  # no judges: execution, then generation order
        proc = [i["procedural_score"] if i["procedural_score"] is not None else -1.0 for i in items]
        order = sorted(range(len(items)), key=lambda k: (-proc[k], -strength[k], k))
        chosen = [k for k in order if items[k]["parse_status"] == "ok"][:keep]
        for k, item in enumerate(items):
            item["kept"] = k in chosen
