"""Code review with known answers: the policy writes small programs, code breaks each one in a single place
(`rsi.tasks.mutants`), and the judges rank the original against a mutant whose result execution shows to differ.

The judges' rankings of these sets have a truth: the original is right. So every set whose two rankings
disagree gives a judgement pair that no judge's opinion decides (`rsi.judging.decide`), put on both shown
orders (`rsi.pipeline.assemble`), and the judge learns to read the code rather than the position. Which label the
original gets is drawn per set from its content, so a judge cannot learn a favourite label instead. The
writer learns too: a program that parses, computes its result, runs the same twice and has a mutant that changes
that result scores 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rsi.corpus.ids import content_id
from rsi.tasks.family import DERIVED, Chain, Derive, Family, FamilyConfig, Generate, Item, Rank
from rsi.tasks.mutants import make_mutants
from rsi.tasks.python_output import _returned, canonical, parse_program, render_program

REVIEW = "review"


@dataclass
class CodeReviewConfig(FamilyConfig):
    """`tasks.code_review`: programs per topic (`candidates`), and how many broken mutants of each program are
    put against it."""

    reviews: int = 2
    # The largest share of a program's body lines that may repeat the prompt's example and still score 1; a
    # program above it scores 0 (its review sets are made all the same). 1.0: no limit. Measured on SmolLM2-135M:
    # 42-53% of the programs that scored 1 repeated at least half of the example's lines, against 0-7% of those
    # that scored 0, so the writer's pairs taught copying the example.
    max_example_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_example_share <= 1.0:
            raise ValueError(f"max_example_share: must be within [0, 1] (got {self.max_example_share})")


def _outcome(verdict: dict) -> tuple[str, str | None]:
    """('returned', canonical value) when `solution()` returned, else (the verdict's status, None)."""
    returned, value = _returned(verdict)
    return ("returned", canonical(value)) if returned else (str(verdict.get("status")), None)


def _review_item(program: Item, code: str, right: bool, set_id: str, mutation: str | None) -> Item:
    return {
        "id": content_id("performance", set_id=set_id, code=code), "step": REVIEW, "parent_id": program["id"],
        "set_id": set_id, "prompt": program["prompt"], "completion": code, "parse_status": "ok",
        "parse_error": None, "parsed": code, "seed": program["seed"], "temperature": program["temperature"],
        "num_prompt_tokens": 0, "num_tokens": 0, "finish_reason": DERIVED,
        "model_version": program["model_version"], "template_hash": program["template_hash"],
        "procedural_score": 1.0 if right else 0.0, "procedural_detail": {"mutation": mutation}, "kept": False,
    }


def make_review_sets(chain: Chain, run_jobs: Callable[[list[dict]], list[dict]], cfg: CodeReviewConfig) -> None:
    """Run every parsed program twice and each of its mutants once; for a program that returns the same value
    both times, the first `reviews` mutants that return something else (or fail) each make a set of two."""
    from rsi.sandbox.executor import json_job

    programs = [i for i in chain["items"] if i["step"] == "write_program"]
    example = _program_variables(chain["seed"], None)["example"]
    plans, jobs = [], []
    for p in programs:
        p["procedural_score"], p["kept"] = 0.0, False
        if p["parse_status"] != "ok":
            continue
        # Both sides are shown as ast.unparse writes them, so formatting cannot give the mutant away.
        mutants = make_mutants(p["parsed"])
        if not mutants:
            continue
        original = _unparsed(p["parsed"])
        codes = [original, original] + [code for _, code in mutants]
        plans.append((p, original, mutants, len(jobs)))
        jobs += [json_job(code, [{"function": "solution", "args": [], "expected": None}]) for code in codes]
    verdicts = run_jobs(jobs) if jobs else []
    for p, original, mutants, start in plans:
        first, second = _outcome(verdicts[start]), _outcome(verdicts[start + 1])
        if first[0] != "returned" or first != second:
            p["procedural_detail"] = {"deterministic": False, "status": first[0]}
            continue
        broken = [(kind, code) for k, (kind, code) in enumerate(mutants)
                  if _outcome(verdicts[start + 2 + k]) != first][:cfg.reviews]
        share = example_share(original, example)
        copied = share > cfg.max_example_share
        computes = computes_its_result(original)
        p["procedural_score"] = 1.0 if broken and computes and not copied else 0.0
        p["procedural_detail"] = {"deterministic": True, "output": first[1], "mutants": len(mutants),
                                  "broken": len(broken), "example_share": round(share, 3), "computes": computes}
        for kind, code in broken:
            set_id = content_id("set", chain=p["set_id"], step=REVIEW, parent=p["id"], mutant=code)
            pair = [_review_item(p, original, True, set_id, None), _review_item(p, code, False, set_id, kind)]
            # the original's label (A or B) is drawn from the set's content: no favourite label to learn
            chain["items"] += pair if int(set_id[:8], 16) % 2 == 0 else pair[::-1]


# What makes a program compute: a `solution()` holding none of these returns a value its literals fix, and an
# off-by-one in a literal "breaks" it. SmolLM2-135M's first trained version learned exactly that from the reward
# without this rule: `return [1, 2, 3, ...` until the token limit, in 10 of 25 held-out programs.
_COMPUTING = ("For", "While", "If", "IfExp", "Compare", "BinOp", "BoolOp", "AugAssign", "Call", "Subscript",
              "ListComp", "SetComp", "DictComp", "GeneratorExp")


def computes_its_result(code: str) -> bool:
    """Whether the program does any work: a loop, a branch, a comparison, an operation or a call. Raises
    SyntaxError for code that does not parse."""
    import ast

    return any(type(node).__name__ in _COMPUTING for node in ast.walk(ast.parse(code)))


def example_share(code: str, example: str) -> float:
    """The share of a program's distinct body lines that its prompt's example holds too (1.0 for a program with
    no body). The held-out evaluation counts copies with it (rsi.evals.format_following), so what it reports is
    what `max_example_share` takes the reward from. Raises SyntaxError for code that does not parse."""
    body = _body_lines(code)
    return len(body & _body_lines(example)) / len(body) if body else 1.0


def _body_lines(code: str) -> set[str]:
    """The distinct stripped lines of a program below its first (`def solution():`), as ast.unparse writes them."""
    return {line.strip() for line in _unparsed(code).splitlines()[1:] if line.strip()}


def _unparsed(code: str) -> str:
    import ast

    return ast.unparse(ast.parse(code))


# The form of program the prompt asks for, shown by example: without one, SmolLM2-135M gave `solution` arguments
# (which nothing can call) in 45 of 60 parsed programs; with one of these, 48 of 64 programs ran and had a mutant.
EXAMPLES = (
    'def solution():\n    words = ["tree", "sky", "river"]\n    count = 0\n    for w in words:\n'
    '        if len(w) > 3:\n            count += 1\n    return count',
    "def solution():\n    n = 27\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
    "        steps += 1\n    return steps",
    'def solution():\n    text = "hello world"\n    out = ""\n    for ch in text:\n        if ch in "aeiou":\n'
    "            out += ch.upper()\n        else:\n            out += ch\n    return out",
    'def solution():\n    prices = {"apple": 3, "pear": 5, "plum": 2}\n    cheap = []\n'
    "    for name, price in prices.items():\n        if price <= 3:\n            cheap.append(name)\n"
    "    return sorted(cheap)",
)


def _program_variables(seed: str, parent: Item | None) -> dict[str, str]:
    """The topic, and an example program picked by the topic's hash (a stable choice across runs)."""
    return {"topic": seed, "example": EXAMPLES[int(content_id("example", topic=seed)[:8], 16) % len(EXAMPLES)]}


FAMILY = Family(
    name="code_review",
    prompt_dir="code_review",
    config=CodeReviewConfig,
    ops=(
        Generate("write_program", "write_program.txt", "candidates", parse_program, render_program,
                 _program_variables),
        Derive(REVIEW, make_review_sets, render_program, count="reviews"),
        Rank("rank_reviews", of=REVIEW, template="rank_reviews.txt"),
    ),
)
