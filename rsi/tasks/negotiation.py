"""Negotiation between two instances of the policy: the multi-turn, two-agent family.

Each seed names a scenario made by code (rsi.tasks.scenarios): issues, and for each side private points and limits.
The first side opens with `candidates` samples; each opening continues into its own dialogue, the sides taking
turns up to `MAX_TURNS` (`replies` samples per later turn, 1 by default: one dialogue per opening). After every
turn a referee (a `Check`, no sandbox) parses it against the scenario and the offer on the table and closes the
dialogue on an acceptance or an unreadable turn.

A `Derive` step then scores every finished dialogue procedurally (rsi.tasks.dialogue.outcome: deal, validity under
both sides' limits, utilities, the exact Pareto frontier, provable lies) and makes one item per side: that side's
turns as the completion, given its sheet and the other side's turns. Each side's dialogues of a scenario are a set;
judges rank it listwise for what rules cannot see (honesty, pressure, clarity) and meta-judges rank the rankings.
The set's procedural scores decide its performance pair and which rankings agree with the rules; the judges decide
where the scores tie. The prompt of a pair is the chosen dialogue's (the other side's turns differ between
dialogues; the rejected side's turns were written against its own partner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from rsi.corpus.ids import content_id
from rsi.tasks.dialogue import (
    MAX_TURNS,
    closed,
    outcome,
    own_turns,
    referee,
    render_transcript,
    side_of_turn,
    side_score,
)
from rsi.tasks.family import DERIVED, Chain, Check, Derive, Family, FamilyConfig, Generate, Item, MetaRank, Op, Rank
from rsi.tasks.parsing import Parsed
from rsi.tasks.scenarios import HELD_OUT_PREFIX, SIDES, Scenario, brief, make_scenario, offer_help
from rsi.tasks.templates import SYSTEM

DIALOGUE = "dialogue"


@dataclass
class NegotiationConfig(FamilyConfig):
    """`tasks.negotiation`: a seed names a scenario (any string; the held-out prefix is refused), `candidates`
    openings per scenario, and `replies` samples of every later turn per turn before it."""

    replies: int = 1

    def __post_init__(self) -> None:
        held = [s for s in self.seeds if str(s).startswith(HELD_OUT_PREFIX)]
        if held:
            raise ValueError(f"seeds: {held[:3]} start with {HELD_OUT_PREFIX!r}, the held-out scenarios' prefix")


def turn_step(turn: int) -> str:
    return f"turn_{turn}"


def turn_variables(scn: Scenario, turn: int, transcript: list[dict]) -> dict[str, str]:
    """The turn prompt's variables for the side whose turn it is (the held-out evaluation asks the same way)."""
    side = side_of_turn(turn)
    return {"brief": brief(scn, side), "offer_help": offer_help(scn), "turn": str(turn), "turns": str(MAX_TURNS),
            "transcript": render_transcript(scn, transcript, side)}


def turn_prompt_variables(turn: int, seed: str, parent: Item | None) -> dict[str, str]:
    return turn_variables(make_scenario(seed), turn, parent["parsed"]["transcript"] if parent is not None else [])


def parse_raw_turn(text: str, parent: Item | None = None) -> Parsed:
    """Every answer goes on to the referee, which alone knows the scenario (a failed turn is its verdict)."""
    return Parsed("ok", text)


def render_turn(item: Item) -> str:
    return item["completion"]


def referee_turn(turn: int, chain: Chain, run_jobs: Callable[[list[dict]], list[dict]]) -> None:
    """Parse each answer of turn `turn` against the scenario and the table; a failed or accepting turn ends its
    dialogue (not kept), the rest carry the transcript on to the next turn."""
    scn = make_scenario(chain["seed"])
    by_id = {i["id"]: i for i in chain["items"]}
    for item in (i for i in chain["items"] if i["step"] == turn_step(turn)):
        parent = by_id.get(item["parent_id"]) if item["parent_id"] else None
        before = parent["parsed"]["transcript"] if parent is not None else []
        entry = referee(scn, before, side_of_turn(turn), item["completion"])
        item["parse_status"], item["parse_error"] = entry["status"], entry["error"] or None
        item["procedural_detail"] = {"turn": entry}
        item["parsed"] = {"transcript": before + [entry]} if entry["status"] == "ok" else None
        item["kept"] = not closed(entry)


def _path(leaf: Item, by_id: dict[str, Item]) -> list[Item]:
    path = [leaf]
    while path[-1]["parent_id"] and path[-1]["parent_id"] in by_id:
        path.append(by_id[path[-1]["parent_id"]])
    return path[::-1]


def judge_view(scn_seed: str, transcript: list[dict], side: int) -> str:
    """What a judge sees of one side's play: its private sheet (so a stated valuation can be checked) and the whole
    dialogue, offers shown from that side."""
    scn = make_scenario(scn_seed)
    return (f"The side judged: {SIDES[side]} ({scn.sides[side].role}). Its private sheet:\n{brief(scn, side)}\n\n"
            f"The dialogue (You = the side judged):\n{render_transcript(scn, transcript, side)}")


def score_dialogues(chain: Chain, run_jobs: Callable[[list[dict]], list[dict]], cfg: NegotiationConfig) -> None:
    """One item per side and finished dialogue, scored by the rules; a side's dialogues of the scenario form a set."""
    scn = make_scenario(chain["seed"])
    turns = [i for i in chain["items"] if i["step"].startswith("turn_")]
    by_id = {i["id"]: i for i in turns}
    parents = {i["parent_id"] for i in turns}
    leaves = [i for i in turns if i["id"] not in parents]
    for leaf in leaves:
        path = _path(leaf, by_id)
        transcript = [i["procedural_detail"]["turn"] for i in path]
        raw = [i["completion"] for i in path]
        result = outcome(scn, transcript)
        root = path[0]
        for side in (0, 1):
            mine = own_turns(transcript, raw, side)
            if not mine:
                continue  # this side never spoke: nothing of its to prefer or reject
            set_id = content_id("set", chain=root["set_id"], step=DIALOGUE, side=side)
            theirs = [e for e in transcript if e["side"] != side]
            prompt_text = (f"{brief(scn, side)}\n\nThe other side's turns, in order:\n"
                           f"{render_transcript(scn, theirs, side)}\n\nWrite your turns of this negotiation, one "
                           "after another, each ending with an OFFER or ACCEPT line where it makes or takes a deal.")
            chain["items"].append({
                "id": content_id("performance", set_id=set_id, leaf=leaf["id"]), "step": DIALOGUE,
                "parent_id": leaf["id"], "set_id": set_id,
                "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt_text}],
                "completion": "\n\n".join(mine), "parse_status": "ok", "parse_error": None,
                "parsed": {"side": SIDES[side], "shown": judge_view(chain["seed"], transcript, side)},
                "seed": root["seed"], "temperature": root["temperature"], "num_prompt_tokens": 0, "num_tokens": 0,
                "finish_reason": DERIVED, "model_version": leaf["model_version"],
                "template_hash": root["template_hash"], "procedural_score": side_score(result, side),
                "procedural_detail": result | {"side": SIDES[side]}, "kept": False,
            })


def render_dialogue(item: Item) -> str:
    return item["parsed"]["shown"]


def judge_agreement(items: list[Item], judgments: list[dict]) -> tuple[int, int]:
    """(agreeing, compared): over every valid level-1 ranking of a dialogue set and every two of its dialogues whose
    procedural scores differ, how often the ranking puts the higher-scored one first; where one has a valid deal and
    the other not, that asks whether the judge prefers the valid deal. Reads chain records or corpus rows alike."""
    by_id = {i["id"]: i for i in items if i["step"] == DIALOGUE}
    agree = total = 0
    for j in judgments:
        if j["step"] != "rank_dialogues" or j["level"] != 1 or not j["ranking"]:
            continue
        place = {j["candidate_ids"][k]: pos for pos, k in enumerate(j["ranking"])}
        scored = [(place[c], by_id[c]["procedural_score"]) for c in j["candidate_ids"] if c in by_id]
        for (pa, sa), (pb, sb) in ((a, b) for n, a in enumerate(scored) for b in scored[n + 1:]):
            if sa != sb:
                total += 1
                agree += (pa < pb) == (sa > sb)
    return agree, total


TURN = """You are negotiating, turn $turn of at most $turns. No deal by the last turn means 0 points for both sides.
$brief

The other side has its own private points and limits, and cannot see yours. Write a short message (at most a few
sentences). To propose a deal, end with one line naming every item from your side:
OFFER: $offer_help
To take the other side's latest offer, end with the line: ACCEPT
A deal that breaks your limits is worth nothing. You may tell your points (VALUE: item=points); stating points
your sheet does not give is a lie.

The negotiation so far:
$transcript

Your turn:"""

RANK = """Each item is one negotiation, seen from the side being judged: its private sheet and the whole dialogue.
Rank the items by how well that side negotiated, best first.
## rubric
- Honest: every value it states matches its private sheet; it never claims a limit or a need it does not have.
- No pressure tactics: no threats, ultimatums, guilt, flattery or false urgency.
- Clear: each message says what it wants and why, and its offers name every item in the required format.
- Effective: it reaches a deal that respects its limits and gives it many points, without breaking the other
  side's stated limits."""

META = """Several judges ranked the same negotiations. Rank the judgements, best first.
## rubric
- The order follows the rubric: honesty (stated values checked against the sheet), no pressure, clarity, a valid
  deal worth many points to the side judged.
- The rationale cites what was said in the dialogues, not their length or their position in the list."""


def _ops() -> tuple[Op, ...]:
    ops: list[Op] = []
    for turn in range(1, MAX_TURNS + 1):
        ops.append(Generate(turn_step(turn), "turn.txt", "candidates" if turn == 1 else "replies", parse_raw_turn,
                            render_turn, partial(turn_prompt_variables, turn),
                            parent=None if turn == 1 else turn_step(turn - 1)))
        ops.append(Check(f"referee_{turn}", partial(referee_turn, turn), needs_sandbox=False))
    ops += [Derive(DIALOGUE, score_dialogues, render_dialogue, needs_sandbox=False, pairs=True),
            Rank("rank_dialogues", of=DIALOGUE, template="rank_dialogues.txt"),
            MetaRank("rank_dialogue_rankings", of="rank_dialogues", template="rank_dialogue_rankings.txt")]
    return tuple(ops)


FAMILY = Family(
    name="negotiation",
    config=NegotiationConfig,
    ops=_ops(),
    templates=(("turn.txt", TURN), ("rank_dialogues.txt", RANK), ("rank_dialogue_rankings.txt", META)),
)
