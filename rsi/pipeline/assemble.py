"""Turn one finished chain into rows of the three corpus tables.

Pairs come from every judged set's decision (`rsi.pipeline.decisions`): for a generated step, the best against
the worst candidate of each set (procedural scores decide where they discriminate, the judges otherwise); for a
ranking step, the better against the worse ranking of a set (agreement with execution decides where it exists,
the meta-judges otherwise). Performance and judgment rows are the chain's records, column for column as the
schemas in `rsi.corpus.schema` name them.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from rsi.corpus.ids import content_id
from rsi.corpus.schema import JUDGMENTS, PERFORMANCES
from rsi.corpus.text import clean_value
from rsi.judging.config import JudgingConfig
from rsi.judging.decide import Pair
from rsi.judging.ranking import labels_for
from rsi.pipeline.decisions import decide_set, items_by_set
from rsi.tasks.family import Chain, Derive, Family, Generate
from rsi.tasks.parsing import loads_untrusted

Row = dict[str, Any]


def assemble_chain(chain_row: Row, family: Family, judging: JudgingConfig) -> dict[str, list[Row]]:
    chain = json.loads(chain_row["state"])
    base = {"iteration": int(chain_row["iteration"]), "family": family.name, "chain_id": str(chain_row["chain_id"])}
    preferences, weights = chain_pairs(chain, family, judging, base)
    performances = [_row(PERFORMANCES, base | i | {"seed_text": chain["seed"]}, json_fields=("parsed",
                         "procedural_detail")) for i in chain["items"]]
    judgments = [_row(JUDGMENTS, base | j | {"weight": weights.get(j["id"], 1.0)}) for j in chain["judgments"]]
    # The rows go on to the overlap filter (which hashes their text) and the writer: both need storable text,
    # whatever a stage before this one let through.
    return clean_value({"performances": performances, "judgments": judgments, "preferences": preferences})


def chain_pairs(chain: Chain, family: Family, judging: JudgingConfig, base: Row) -> tuple[list[Row], dict[str, float]]:
    """The chain's preference rows and the trust weight of each judgment. Judgement pairs come first, in the
    order their sets were judged: the position balance admits them in that order."""
    weights: dict[str, float] = {}
    preferences: list[Row] = []
    level1_sets = list(dict.fromkeys(j["set_id"] for j in chain["judgments"] if j["level"] == 1))
    for set_id in level1_sets:
        _, levels, d = decide_set(chain, set_id, judging)
        for judged, level_weights in zip(levels, d.weights):
            weights.update({j["id"]: w for j, w in zip(judged, level_weights)})
        for p in (p for p in d.pairs if p.level >= 1):
            good, bad = levels[p.level - 1][p.chosen], levels[p.level - 1][p.rejected]
            # Labels are stable across permutations, so the better ranking is a valid answer to the worse
            # ranking's prompt: the pair shares that prompt, as DPO needs (decide pairs only judgments that
            # were shown the same items).
            rows = [_pair_row(base, good["step"], p.level + 1, bad["prompt"], good, bad, "raw_text", p)
                    | {"chosen_first_shown": _shown_position(good, bad), "shown_items": len(good["presented_order"])}]
            if judging.truth_both_orders and p.origin == "procedural" \
                    and good["presented_order"] != bad["presented_order"]:
                # Execution's verdict holds whatever the order shown, so the pair is also put on the better
                # judgment's own prompt: the chosen answer then sits once at each shown position of the item it
                # picks, and DPO cannot learn a position in place of the answer.
                mirror = _pair_row(base, good["step"], p.level + 1, good["prompt"], good, bad, "raw_text", p)
                mirror["id"] = content_id("preference", chosen=good["id"], rejected=bad["id"], step=good["step"],
                                          level=p.level + 1, prompt_of=good["id"])
                rows.append(mirror | {"chosen_first_shown": _shown_position(good, good),
                                      "shown_items": len(good["presented_order"])})
            if p.origin == "procedural" and judging.truth_same_rationale:
                contrast = _with_ranking(good["raw_text"], bad["ranking"], p.level)
                for row in rows:
                    row["rejected"] = [{"role": "assistant", "content": contrast or bad["raw_text"]}]
            preferences += rows
    sets = items_by_set(chain["items"])
    for op in (o for o in family.ops if isinstance(o, Generate) or (isinstance(o, Derive) and o.pairs)):
        for set_id, cands in sets.items():
            if cands[0]["step"] != op.step or len(cands) < 2:
                continue
            for p in (p for p in decide_set(chain, set_id, judging)[2].pairs if p.level == 0):
                good, bad = cands[p.chosen], cands[p.rejected]
                preferences.append(_pair_row(base, op.step, 1, good["prompt"], good, bad, "completion", p))
    return preferences, weights


def _with_ranking(answer: str, ranking: list[int] | None, level: int) -> str | None:
    """A listwise judge's JSON answer with its ranking replaced by `ranking` (indices of the judged items), written
    as the judge writes JSON; None when the answer is not such an object (pairwise verdicts, free text)."""
    try:
        obj = loads_untrusted(answer)  # the parser's own reading, so the rewritten answer is as clean as the parsed one
    except ValueError:
        return None
    if not (isinstance(obj, dict) and isinstance(obj.get("ranking"), list) and ranking
            and len(obj["ranking"]) == len(ranking)):
        return None
    labels = labels_for(len(ranking), prefix="J" * (level - 1))
    return json.dumps({**obj, "ranking": [labels[i] for i in ranking]}, ensure_ascii=False, separators=(",", ":"))


def _row(schema: pa.Schema, record: Row, json_fields: tuple[str, ...] = ()) -> Row:
    """The schema's columns of a chain record; structured values of `json_fields` stored as JSON text."""
    row = {name: record.get(name) for name in schema.names}
    for name in json_fields:
        row[name] = json.dumps(row[name]) if row[name] is not None else None
    return row


def _pair_weight(p: Pair) -> float:
    """Sampling weight of a pair in DPO: execution truth is certain; a judges' pair counts by its margin."""
    return 1.0 if p.origin == "procedural" else p.margin


def _shown_position(judgment: Row, asked: Row) -> int | None:
    """Where the item `judgment` put first sat in the order `asked` showed (0 = first): the position the chosen
    answer of a pair picks in the pair's prompt."""
    ranking, shown = judgment.get("ranking"), list(asked.get("presented_order") or [])
    return shown.index(ranking[0]) if ranking and ranking[0] in shown else None


def _pair_row(base: Row, step: str, level: int, prompt: list, good: Row, bad: Row, text_key: str, p: Pair) -> Row:
    return {
        "id": content_id("preference", chosen=good["id"], rejected=bad["id"], step=step, level=level),
        "iteration": base["iteration"], "family": base["family"], "step": step, "level": level, "prompt": prompt,
        "chosen": [{"role": "assistant", "content": good[text_key]}],
        "rejected": [{"role": "assistant", "content": bad[text_key]}],
        "chosen_id": good["id"], "rejected_id": bad["id"], "margin": p.margin, "weight": _pair_weight(p),
        "source_ids": p.source_ids, "chosen_first_shown": None, "shown_items": None,
    }
