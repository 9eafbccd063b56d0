"""Format following: does the model still answer the pipeline's own generation prompts in a form they parse?

Every `Generate` op of every enabled family is rendered exactly as `rsi.pipeline.steps.generate_step` renders it
(system message, template, the op's JSON schema for structured decoding), on held-out seeds that no
conf/tasks/*.yaml lists, so training never saw these prompts. Ops that need a parent get fixed held-out parents:
a task built from a HumanEval problem (programming), a small fixed program (python_output). Greedy decoding; an
item is correct when the op's own `parse(text, parent)` accepts the answer. A drop here means training taught
the model to break the formats the loop depends on.

Where the prompt shows an example program (code_review's `write_program`), each answer also says whether it
copies the example (`copies_example`, reported as the `copies_example` metric, lower is better): a copy parses,
so the parse rate alone would count it as a success. The same generations serve both; nothing is asked twice.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from rsi.corpus.ids import content_id, derived_seed
from rsi.evals.stats import wilson
from rsi.evals.task import EvalContext, TaskResult, item_hash, subset
from rsi.tasks import get_family
from rsi.tasks.code_review import example_share
from rsi.tasks.family import Family, Generate, Item
from rsi.tasks.parsing import UNPARSEABLE, Parsed
from rsi.tasks.templates import SYSTEM, render

TASK = "format_following"
# An answer at least this share of whose body lines its prompt's example holds too is a copy: the copies
# SmolLM2-135M wrote repeat the example whole or cut short, far above half, and a short program of its own can
# still share a line such as `return count`.
COPY_SHARE = 0.5

# Seeds training never sees: disjoint from every seed in conf/tasks/*.yaml (a unit test checks).
HELDOUT_SEEDS: dict[str, list[str]] = {
    "programming": ["inventory accounting", "calendar arithmetic", "graph traversal", "unit conversion",
                    "matrix operations", "URL parsing", "run-length encoding", "bank transactions"],
    "python_output": ["dictionary comprehension", "recursion", "string slicing", "set operations",
                      "sorting with keys", "nested loops", "bit manipulation", "tuple unpacking"],
    # code_review gets 100 topics, the others 8: its write_program step is the one that +preset=improve trains,
    # and a parse rate near 80% needs about a hundred items before a paired test can see it move.
    "code_review": ["queues", "string padding", "number bases", "anagrams", "stacks", "coin change",
                    "triangle numbers", "caesar cipher", "perfect numbers", "armstrong numbers", "collatz steps",
                    "happy numbers", "harshad numbers", "abundant numbers", "pascal's triangle", "roman numerals",
                    "run lengths", "duplicate removal", "list rotation", "list flattening", "pairwise sums",
                    "cumulative products", "second largest", "missing number", "majority element", "longest word",
                    "shortest word", "title case", "snake case", "camel case", "acronyms", "isograms", "pangrams",
                    "word frequencies", "sentence splitting", "whitespace trimming", "character positions",
                    "consonant counts", "uppercase letters", "lowercase letters", "digit extraction",
                    "number parsing", "hexadecimal digits", "octal numbers", "bit counting", "powers of two",
                    "integer square roots", "cube roots", "modular arithmetic", "remainders", "divisors",
                    "least common multiple", "prime factors", "digit products", "reversed numbers",
                    "number palindromes", "nested lists", "list intersection", "list union", "set differences",
                    "tuple sorting", "dictionary merging", "dictionary inversion", "key lookups", "default values",
                    "grade averages", "shopping totals", "discount prices", "tax calculation", "tip calculation",
                    "interest growth", "savings plans", "distance conversion", "weight conversion",
                    "time conversion", "seconds to minutes", "day counting", "age calculation", "scores ranking",
                    "top three values", "range sums", "step sequences", "arithmetic sequences",
                    "geometric sequences", "alternating sums", "index lookups", "element swapping",
                    "bubble passes", "selection of minima", "zipping lists", "chunking lists", "sliding windows",
                    "moving averages", "string repetition", "character shifting", "letter grades", "vote counting",
                    "inventory counts", "temperature ranges", "string interleaving"],
    "open_ended": [
        "Your sibling asks to borrow a large sum of money for the third time and has not repaid the first two loans.",
        "A colleague confides they are job hunting, and your manager asks you whether anyone is planning to leave.",
        "You notice a small billing error in your favour from a local family-run shop.",
        "Your best friend's partner is flirting with other people at parties.",
        "A roommate keeps eating your groceries but pays more than their share of the rent.",
        "You were offered a promotion that would mean moving away from an ageing parent.",
        "A student you tutor asks you to write their admissions essay for extra pay.",
        "Your volunteer group's leader spends donations on lavish team dinners.",
    ],
}

# Small deterministic programs as held-out parents of python_output's predict_output.
PROGRAMS = [
    "def solution():\n    return sum(i * i for i in range(5))",
    "def solution():\n    words = ['pear', 'fig', 'apple']\n    return sorted(words, key=len)",
    "def solution():\n    d = {}\n    for ch in 'banana':\n        d[ch] = d.get(ch, 0) + 1\n    return d",
    "def solution():\n    x = [3, 1, 4, 1, 5]\n    return x[::-2]",
    "def solution():\n    return 'Hello'.lower().replace('l', 'L')",
    "def solution():\n    a, b = 0, 1\n    for _ in range(7):\n        a, b = b, a + b\n    return a",
    "def solution():\n    return len({n % 4 for n in range(10)})",
    "def solution():\n    return [i for i in range(12) if i % 3 == 0 and i % 2 == 1]",
]
HUMANEVAL_PARENTS = 8  # HumanEval problems turned into programming tasks for create_eval and solve


def _item(step: str, key: str, parsed: Any, completion: str) -> Item:
    return {"id": content_id("format_parent", step=step, key=key), "step": step, "parsed": parsed,
            "parse_status": "ok", "completion": completion, "kept": True}


def humaneval_tasks() -> list[tuple[str, Item]]:
    """(problem id, a parsed create_task item) for a fixed set of HumanEval problems with doctest examples."""
    from rsi.evals.humaneval import read_problems

    out = []
    for task_id, p in sorted(read_problems().items(), key=lambda kv: item_hash(kv[0])):
        fn = next((n for n in ast.parse(p["prompt"]).body
                   if isinstance(n, ast.FunctionDef) and n.name == p["entry_point"]), None)
        doc = ast.get_docstring(fn) if fn else None
        if not doc or ">>>" not in doc:
            continue
        head, *examples = doc.split(">>>")
        returns = f" -> {ast.unparse(fn.returns)}" if fn.returns else ""
        # A dangling "For example:" before the examples would point at nothing once they move to their own field.
        description = re.sub(r"\n[^\n]*examples?:?\s*$", "", head.strip(), flags=re.I)
        task = {"title": fn.name.replace("_", " "), "description": description[:600], "entry_point": fn.name,
                "signature": f"def {fn.name}({ast.unparse(fn.args)}){returns}:",
                "examples": [" -> ".join(x.strip().split("\n", 1)) for x in examples[:3]]}
        out.append((task_id, _item("create_task", task_id, task, p["prompt"])))
        if len(out) == HUMANEVAL_PARENTS:
            break
    return out


def fixed_programs() -> list[tuple[str, Item]]:
    return [(f"program-{k}", _item("write_program", f"program-{k}", code, code)) for k, code in enumerate(PROGRAMS)]


# (family, parent step) -> held-out parents; a child op whose parent has no entry here is skipped.
PARENTS: dict[tuple[str, str], Callable[[], list[tuple[str, Item]]]] = {
    ("programming", "create_task"): humaneval_tasks,
    ("python_output", "write_program"): fixed_programs,
}


def cases(families: list[str]) -> list[dict[str, Any]]:
    """One case per (family, Generate op, held-out seed or parent): what to render, and its id."""
    out = []
    for name in families:
        family = get_family(name)
        if name not in HELDOUT_SEEDS:
            warnings.warn(f"format_following: family {name!r} declares no held-out seeds; skipped", stacklevel=2)
            continue
        for op in (o for o in family.ops if isinstance(o, Generate)):
            if op.parent is None:
                inputs: list[tuple[str, Item | None]] = [(s, None) for s in HELDOUT_SEEDS[name]]
            elif (name, op.parent) in PARENTS:
                inputs = list(PARENTS[(name, op.parent)]())
            else:
                warnings.warn(f"format_following: no held-out parents for {name}/{op.step}; skipped", stacklevel=2)
                continue
            for seed, parent in inputs:
                out.append({"id": content_id(TASK, family=name, step=op.step, seed=seed), "family": family,
                            "op": op, "seed": seed, "parent": parent})
    return out


def request(case: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's generation request for the case (generate_step), greedy instead of sampled."""
    family: Family = case["family"]
    op: Generate = case["op"]
    text, _ = render(family, op.template, **op.variables(case["seed"], case["parent"]))
    # The family's own token budget for the op, as its config type declares it (a run's YAML may change it).
    max_tokens = int(getattr(family.config(), op.max_tokens))
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            "max_tokens": max_tokens, "temperature": 0.0, "seed": derived_seed(case["id"]), "json_schema": op.schema}


def copy_fields(case: dict[str, Any], parsed: Parsed) -> dict[str, Any]:
    """For a prompt that shows an example program: the share of the answer's lines that repeat it, and whether
    that makes a copy; an answer that does not parse copies nothing, so every such prompt counts, the same in
    both versions compared. Nothing for a prompt without an example."""
    example = case["op"].variables(case["seed"], case["parent"]).get("example")
    if example is None:
        return {}
    share = None
    if parsed.ok:
        try:
            share = example_share(parsed.value, example)
        except (SyntaxError, *UNPARSEABLE):
            pass
    return {"example_share": None if share is None else round(share, 3),
            "copies_example": int(share is not None and share >= COPY_SHARE)}


def _rate(values: list[int]) -> dict[str, Any]:
    return {"value": sum(values) / len(values), "ci95": wilson(sum(values), len(values)), "n": len(values)}


def score(chosen: list[dict[str, Any]], texts: list[str]) -> TaskResult:
    items = []
    for case, text in zip(chosen, texts):
        parsed = case["op"].parse(text, case["parent"])
        items.append({"id": case["id"], "family": case["family"].name, "step": case["op"].step,
                      "seed": case["seed"], "parse_status": parsed.status, "error": parsed.error, "text": text,
                      "correct": int(parsed.ok), **copy_fields(case, parsed)})
    by_step: dict[str, list[int]] = defaultdict(list)
    for it in items:
        by_step[f"parse_rate.{it['family']}.{it['step']}"].append(it["correct"])
    extra = {key: _rate(v) for key, v in sorted(by_step.items())}
    copies = [it["copies_example"] for it in items if "copies_example" in it]
    if copies:
        extra["copies_example"] = _rate(copies)
    k = sum(it["correct"] for it in items)
    return TaskResult(task=TASK, metric="parse_rate", value=k / len(items) if items else 0.0,
                      ci95=wilson(k, len(items)), n=len(items), items=items, extra=extra)


def run_format_following(ctx: EvalContext) -> TaskResult:
    chosen = subset(cases(ctx.families), ctx.limit)
    outs = ctx.generate([request(c) for c in chosen]) if chosen else []
    return score(chosen, [o["text"] for o in outs])
