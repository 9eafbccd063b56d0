"""Mutants read like code someone wrote: over every HumanEval canonical solution, a mutant holds no token the
original lacks beyond its changed operator or constant, so a judge cannot tell it from the original without
reading the code. Then each operator on small programs."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import Counter

import pytest

from rsi.tasks.mutants import make_mutants

pytestmark = pytest.mark.unit

_SKIP = (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.COMMENT)
# What each operator may write that the original did not hold; a dropped branch writes nothing new.
_COMPARISONS = {"<", "<=", ">", ">=", "==", "!=", "in", "not", "is"}
NEW_TOKENS = {"flip": lambda t: t.string in _COMPARISONS, "off_by_one": lambda t: t.type == tokenize.NUMBER,
              "swap_boolop": lambda t: t.string in {"and", "or"}, "drop_branch": lambda t: False}
CONSTANT_BRANCH = re.compile(r"\b(if|elif|while) (False|True)\b")


def _tokens(code: str) -> dict[str, tokenize.TokenInfo]:
    return {t.string: t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in _SKIP}


def _same_op_nesting(tree: ast.AST) -> int:
    """`a or (b or c)`: a boolean operator written around the same operator, in parentheses."""
    return sum(isinstance(v, ast.BoolOp) and type(v.op) is type(n.op)
               for n in ast.walk(tree) if isinstance(n, ast.BoolOp) for v in n.values)


def _hollow_blocks(tree: ast.AST) -> int:
    """Function or loop bodies with nothing in them but `pass` or a docstring."""
    hollow = 0
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.For | ast.While | ast.If | ast.With):
            stmts = [s for s in n.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            hollow += all(isinstance(s, ast.Pass) for s in stmts)
    return hollow


def _tells(original: str, kind: str, mutant: str) -> list[str]:
    found = []
    if len(CONSTANT_BRANCH.findall(mutant)) > len(CONSTANT_BRANCH.findall(original)):
        found.append("a branch on a constant")
    before = _tokens(original)
    new = [t.string for s, t in _tokens(mutant).items() if s not in before and not NEW_TOKENS[kind](t)]
    if new:
        found.append(f"tokens the original lacks: {new}")
    a, b = ast.parse(original), ast.parse(mutant)
    if _same_op_nesting(b) > _same_op_nesting(a):
        found.append("a boolean operator in parentheses around the same operator")
    if _hollow_blocks(b) > _hollow_blocks(a):
        found.append("a block left with nothing in it")
    return found


def test_no_mutant_of_a_humaneval_solution_has_a_textual_tell() -> None:
    from rsi.evals.humaneval import read_problems

    kinds: Counter[str] = Counter()
    tells = []
    for task_id, p in read_problems().items():
        original = ast.unparse(ast.parse(p["prompt"] + p["canonical_solution"]))  # as judges are shown both
        for kind, mutant in make_mutants(original):
            kinds[kind] += 1
            tells += [f"{task_id} {kind}: {t}" for t in _tells(original, kind, mutant)]
    assert not tells, "\n".join(tells[:20])
    # Every operator still finds sites, so the check above looked at each of them.
    assert kinds["drop_branch"] >= 80 and kinds["flip"] >= 100 and kinds["off_by_one"] >= 100, kinds
    assert kinds["swap_boolop"] >= 10, kinds


def test_the_tell_check_sees_a_branch_switched_off() -> None:
    """What the operators wrote before branches were deleted: the check must not pass it."""
    original = "def f(x):\n    if x > 1:\n        return 1\n    return 0"
    assert _tells(original, "drop_branch", "def f(x):\n    if False:\n        return 1\n    return 0")
    assert _tells(original, "drop_branch", "def f(x):\n    if x > 1:\n        pass\n    return 0")
    assert not _tells(original, "drop_branch", "def f(x):\n    return 0")


def _kinds(code: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, mutant in make_mutants(code, limit=50):
        out.setdefault(kind, []).append(mutant)
    return out


def test_a_branch_with_else_gives_way_to_its_else() -> None:
    code = "def f(x):\n    if x > 3:\n        y = x\n    else:\n        y = -x\n    return y"
    assert _kinds(code)["drop_branch"] == ["def f(x):\n    y = -x\n    return y"]


def test_a_branch_without_else_is_deleted_where_the_block_keeps_a_statement() -> None:
    code = "def f(xs):\n    n = 0\n    for x in xs:\n        if x:\n            n += 1\n    return n"
    assert "drop_branch" not in _kinds(code)  # the loop's body would be empty
    code = "def f(xs):\n    n = 0\n    for x in xs:\n        if x:\n            n += 1\n        n *= 2\n    return n"
    assert _kinds(code)["drop_branch"] == ["def f(xs):\n    n = 0\n    for x in xs:\n        n *= 2\n    return n"]
    code = 'def f(x):\n    """Doc."""\n    if x:\n        return 1'
    assert "drop_branch" not in _kinds(code)  # a function left with its docstring alone


def test_an_elif_is_dropped_from_its_chain() -> None:
    code = "def f(x):\n    if x < 0:\n        return -1\n    elif x > 0:\n        return 1\n    return 0"
    drops = _kinds(code)["drop_branch"]
    assert "def f(x):\n    if x < 0:\n        return -1\n    return 0" in drops  # the elif, whose block may empty
    assert "def f(x):\n    if x > 0:\n        return 1\n    return 0" in drops  # the if, its elif takes over


def test_operators_skip_sites_that_only_a_tell_could_mutate() -> None:
    # either swap would print the same operator around itself: `a and (b and c)`, `a or (b or c)`
    assert "swap_boolop" not in _kinds("def f(a, b, c):\n    return a or (b and c)")
    assert _kinds("def f(a, b):\n    return a and b")["swap_boolop"] == ["def f(a, b):\n    return a or b"]
    assert "flip" not in _kinds("def f(x):\n    return 0 <= x < 9")  # it would read `0 > x < 9`
    assert _kinds("def f(x):\n    return x < 9")["flip"] == ["def f(x):\n    return x >= 9"]
    # an off-by-one changes the constant where it stands, never writing `x - 0` or `x + 1 + 1`
    offs = _kinds("def f(x):\n    return x[0] + x[-1] - 1")["off_by_one"]
    assert sorted(offs) == ["def f(x):\n    return x[0] + x[-1] - 2", "def f(x):\n    return x[0] + x[-2] - 1",
                            "def f(x):\n    return x[1] + x[-1] - 1"]
