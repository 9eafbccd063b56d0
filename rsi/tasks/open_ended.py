"""Open-ended advice under a social or ethical dilemma: no procedure can check it, so only judges and
meta-judges decide; the family exercises the recursion where execution has nothing to say."""

from __future__ import annotations

from rsi.tasks.family import Family, Generate, Item, MetaRank, Rank
from rsi.tasks.parsing import Parsed


def parse_response(text: str, parent: Item | None = None) -> Parsed:
    return Parsed("ok", text.strip()) if text and text.strip() else Parsed("empty", error="no text")


def render_response(item: Item) -> str:
    return item["completion"]


def _variables(seed: str, parent: Item | None) -> dict[str, str]:
    return {"dilemma": seed}


FAMILY = Family(
    name="open_ended",
    prompt_dir="open_ended",
    ops=(
        Generate("respond", "respond.txt", "candidates", parse_response, render_response, _variables),
        Rank("rank_responses", of="respond", template="rank_responses.txt"),
        MetaRank("rank_response_rankings", of="rank_responses", template="rank_response_rankings.txt"),
    ),
)
