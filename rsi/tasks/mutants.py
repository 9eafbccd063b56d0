"""Broken variants of a solution (mutation testing): an evaluation suite that a mutant passes is weak.

Each mutant changes one site of the program: a flipped comparison, an off-by-one constant, a dropped branch,
a swapped boolean operator. Only mutants that still compile and differ from the original are kept.
"""

from __future__ import annotations

import ast
import copy

from rsi.tasks.parsing import UNPARSEABLE

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _sites(tree: ast.AST) -> list[tuple[str, int]]:
    sites = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIP:
            sites.append(("flip", i))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites.append(("off_by_one", i))
        elif isinstance(node, ast.If):
            sites.append(("drop_branch", i))
        elif isinstance(node, ast.BoolOp):
            sites.append(("swap_boolop", i))
    return sites


def _mutate(tree: ast.AST, kind: str, index: int) -> ast.AST:
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    if kind == "flip":
        node.ops[0] = _FLIP[type(node.ops[0])]()
    elif kind == "off_by_one":
        node.value = node.value + 1
    elif kind == "drop_branch":
        # Keep the else part (or nothing): the branch's own work disappears.
        node.test = ast.Constant(False)
    elif kind == "swap_boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return tree


def make_mutants(code: str, limit: int = 6) -> list[tuple[str, str]]:
    """Up to `limit` (kind, code) mutants, spread over the program's mutable sites in order. A program too
    deeply nested to rewrite (ast's unparse and deepcopy recurse) has none."""
    try:
        return _mutants(code, limit)
    except (SyntaxError, *UNPARSEABLE):
        return []


def _mutants(code: str, limit: int) -> list[tuple[str, str]]:
    tree = ast.parse(code)
    original = ast.unparse(tree)
    sites = _sites(tree)
    if not sites:
        return []
    stride = max(1, len(sites) // limit)
    out: list[tuple[str, str]] = []
    seen = {original}
    for kind, index in sites[::stride]:
        mutated = ast.unparse(ast.fix_missing_locations(_mutate(tree, kind, index)))
        if mutated in seen:
            continue
        try:
            compile(mutated, "<mutant>", "exec")
        except SyntaxError:
            continue
        seen.add(mutated)
        out.append((kind, mutated))
        if len(out) >= limit:
            break
    return out
