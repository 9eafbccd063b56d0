"""The family API: a task family is a seed list plus a chain of operations, declared as data.

A chain row starts from one seed (a domain, a topic, a dilemma) and flows through the family's operations in
order; each becomes one Ray Data stage. The operations are few and generic, so a new family is one module that
lists them, its prompt templates and one YAML under conf/tasks/ (its seeds, and the sizes it changes from its
config type's defaults):

- `Generate`: sample `count` candidates from the policy for the seed, or for each kept item of a parent step.
- `Rank`: judges rank each candidate set of a generated step listwise, once per permutation (level 1).
- `MetaRank`: judges rank the rankings of a candidate set (level 2), and those rankings in turn up to
  `judging.meta_depth`.
- `Select`: keep the best `keep` candidates of each set (procedural scores first, then the judges).
- `Check`: a procedural judge (the sandbox) that sets `procedural_score` on items.
- `Derive`: candidates made by code rather than sampled (a program and its broken mutants), each with the
  score execution gives it, so that the judges' rankings of the set have a known truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rsi.tasks.parsing import Parsed

Item = dict[str, Any]  # one model output in a chain: id, step, parent_id, set_id, completion, parsed, …
Chain = dict[str, Any]  # {"seed": str, "items": [Item], "judgments": [dict]}


@dataclass
class FamilyConfig:
    """The sizes every family reads (`tasks.<family>:` in the config). A family whose operations read more
    declares a subclass with those fields and names it in `Family.config`; its YAML lists that type as its schema
    (`family_schema/<name>`, stored by rsi.config.register_schema for the built-in families)."""

    seeds: list[str] = field(default_factory=list)  # domains, topics or dilemmas: one chain per seed
    candidates: int = 4  # samples of the family's first step per seed: the set the judges rank
    max_tokens: int = 256
    temperature: float = 0.9


@dataclass(frozen=True)
class Generate:
    step: str
    template: str  # prompt template file under the family's prompt folder
    count: str  # field of the family's config holding how many samples per seed/parent
    parse: Callable[[str, Item | None], Parsed]  # (text, parent item) -> Parsed
    render: Callable[[Item], str]  # what a judge (or a child prompt) sees of an item
    variables: Callable[[str, Item | None], dict[str, str]]  # (seed, parent item) -> template variables
    parent: str | None = None  # None: one set per seed; else one set per kept item of that step
    schema: dict[str, Any] | None = None  # JSON schema for structured decoding, when the output is JSON
    max_tokens: str = "max_tokens"  # field of the family's config


@dataclass(frozen=True)
class Rank:
    step: str
    of: str  # the generated step whose candidate sets are ranked
    template: str  # instruction, then a line '## rubric', then the rubric


@dataclass(frozen=True)
class MetaRank:
    step: str
    of: str  # the Rank step whose rankings are ranked
    template: str


@dataclass(frozen=True)
class Select:
    of: str
    keep: str = "keep"  # field of the family's config


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Chain, Callable[[list[dict]], list[dict]]], None]  # (chain, sandbox runner) -> None
    needs_sandbox: bool = True


@dataclass(frozen=True)
class Derive:
    """Adds the items of `step` to a chain: sets of candidates built from a parent step's items by code, each
    with its `procedural_score` set. They are the judges' material, not the policy's answers, so they form no
    performance pairs (unless `pairs`) and do not count as model outputs (their `finish_reason` is DERIVED)."""

    step: str
    run: Callable[[Chain, Callable[[list[dict]], list[dict]], Any], None]  # (chain, sandbox runner, family config)
    render: Callable[[Item], str]  # what a judge sees of an item
    count: str | None = None  # field of the family's config bounding the sets made per parent item
    needs_sandbox: bool = True
    # True where the items are the policy's own outputs regrouped (one side's turns of a whole dialogue): its sets
    # then form performance pairs, as a Generate's do. They still do not count again as model outputs.
    pairs: bool = False


DERIVED = "derived"  # the finish_reason of a Derive step's items

Op = Generate | Rank | MetaRank | Select | Check | Derive


@dataclass(frozen=True)
class Family:
    name: str
    ops: tuple[Op, ...]
    prompt_dir: str = ""  # folder of this family's template files: relative to rsi/tasks/prompts, or absolute
    templates: tuple[tuple[str, str], ...] = ()  # inline (name, text) templates, looked up before files
    config: type[FamilyConfig] = FamilyConfig  # the type of `tasks.<name>`: the sizes its operations read

    def op(self, step: str) -> Op:
        for o in self.ops:
            if getattr(o, "step", None) == step:
                return o
        raise KeyError(f"family {self.name} has no step {step!r}")

    @property
    def steps(self) -> list[str]:
        return [o.step for o in self.ops if isinstance(o, (Generate, Rank, MetaRank))]

    def config_fields(self) -> list[str]:
        """The fields of its config the operations read by name (sample counts, token budgets, `keep`)."""
        read = [n for o in self.ops for n in ((o.count, o.max_tokens) if isinstance(o, Generate)
                                              else (o.keep,) if isinstance(o, Select)
                                              else (o.count,) if isinstance(o, Derive) and o.count else ())]
        return sorted(set(read))
