"""Prompt templates: text files in the package (or inline in a family), `$name` placeholders, and a hash
stored on every row."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from string import Template

from rsi.tasks.family import Family

PROMPTS = Path(__file__).parent / "prompts"
# The system turns of every generation and every judgement, in the corpus pass and in the held-out evaluation
# alike: an evaluation must ask as the pipeline asks.
SYSTEM = "You are a skilled, careful assistant."
JUDGE_SYSTEM = "You are a careful, impartial judge."
RUBRIC_MARK = "## rubric"


@cache
def _file(folder: str, name: str) -> str:
    return (PROMPTS / folder / name).read_text()  # an absolute folder replaces PROMPTS


def load(family: Family, name: str) -> tuple[str, str]:
    """(template text, short hash). The hash changes whenever the wording does, so rows from different
    prompt versions can be told apart in the corpus."""
    inline = dict(family.templates)
    text = inline[name] if name in inline else _file(family.prompt_dir, name)
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


def render(family: Family, name: str, **variables: str) -> tuple[str, str]:
    text, digest = load(family, name)
    return Template(text).substitute(variables).strip(), digest


def split_rubric(family: Family, name: str) -> tuple[str, str, str]:
    """A ranking template: (instruction, rubric, hash)."""
    text, digest = load(family, name)
    head, _, rubric = text.partition(RUBRIC_MARK)
    if not rubric:
        raise ValueError(f"{family.name}/{name} has no '{RUBRIC_MARK}' line")
    return head.strip(), rubric.strip(), digest
