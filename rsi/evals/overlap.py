"""Held-out items never become training data: preference rows that share a run of code tokens with an
evaluation item are left out of the corpus.

Texts are split into code tokens (identifiers, numbers, single punctuation marks), and every run of `n` tokens
of every evaluation item is hashed once; a preference row whose prompt, chosen or rejected text holds one of
those runs overlaps.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

TOKEN = re.compile(r"\w+|[^\w\s]")


def ngram_hashes(text: str, n: int) -> set[bytes]:
    tokens = TOKEN.findall(text)
    return {hashlib.blake2b(" ".join(tokens[i:i + n]).encode(), digest_size=8).digest()
            for i in range(len(tokens) - n + 1)}


class OverlapFilter:
    def __init__(self, held_out_texts: Iterable[str], n: int = 10) -> None:
        self.n = n
        self.grams: set[bytes] = set()
        for text in held_out_texts:
            self.grams |= ngram_hashes(text, n)

    def overlaps(self, text: str) -> bool:
        return not self.grams.isdisjoint(ngram_hashes(text, self.n))

    def keep(self, preferences: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The rows that share no run with a held-out item, and how many were left out."""
        kept = [r for r in preferences if not any(self.overlaps(m.get("content") or "")
                                                   for key in ("prompt", "chosen", "rejected")
                                                   for m in r.get(key) or [])]
        return kept, len(preferences) - len(kept)


def held_out_texts(tasks: list[str], data: dict[str, str]) -> list[str]:
    """The code of every item the evaluation tasks score: HumanEval problems and solutions (which the output
    prediction and judge accuracy sets are derived from), plus the items of any file replacing a built-in set."""
    from rsi.evals.humaneval import read_problems
    from rsi.evals.judge_accuracy import DATA, load_pairs
    from rsi.evals.output_prediction import builtin_items, read_items

    texts = [p["prompt"] + p["canonical_solution"] for p in read_problems().values()]
    if "output_prediction" in tasks:
        path = data.get("output_prediction")
        texts += [it["code"] for it in (read_items(path) if path else builtin_items())]
    if "judge_accuracy" in tasks:
        texts += [p[k] for p in load_pairs(data.get("judge_accuracy") or DATA) for k in ("good", "bad")]
    return texts
