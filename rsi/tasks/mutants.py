"""Broken variants of a solution (mutation testing): an evaluation suite that a mutant passes is weak.

Each mutant changes one site of the program: a flipped comparison, an off-by-one constant, a dropped branch,
a swapped boolean operator. Only mutants that still compile and differ from the original are kept.

A mutant must read like code someone wrote: judges are trained and scored on telling it from the original, and
a textual tell (`if False:`, a block left holding only `pass`, `a or (b or c)`) would teach them to spot the
tell instead of reading the code. So a branch is dropped by deleting it, and a site whose mutation could only
be written with such a tell is not mutated at all.
"""

from __future__ import annotations

import ast
import copy

from rsi.tasks.parsing import UNPARSEABLE

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_RISING, _FALLING = (ast.Lt, ast.LtE), (ast.Gt, ast.GtE)
# Statement lists that may be left empty: an `else` (or `finally`) without statements is simply not written.
_MAY_BE_EMPTY = ("orelse", "finalbody")


def _container(tree: ast.AST, node: ast.stmt) -> tuple[ast.AST, str, list[ast.stmt]]:
    """The node holding `node` in one of its statement lists, the list's field name and the list itself."""
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if isinstance(value, list) and any(s is node for s in value):
                return parent, name, value
    raise LookupError("statement not found in its tree")


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _droppable(tree: ast.AST, node: ast.If) -> bool:
    """Whether deleting the branch leaves ordinary code: with an `else`, its body takes the branch's place; without,
    the block must keep a statement of its own (a docstring alone would leave an empty function, as `pass` would)."""
    if node.orelse:
        return True
    _, field, stmts = _container(tree, node)
    rest = [s for s in stmts if s is not node]
    return field in _MAY_BE_EMPTY or any(not _is_docstring(s) for s in rest)


def _flippable(node: ast.Compare) -> bool:
    """A chained comparison flipped at one link would point both ways (`0 > x < 10`), which nobody writes."""
    if type(node.ops[0]) not in _FLIP:
        return False
    ops = [_FLIP[type(node.ops[0])]()] + node.ops[1:]
    return not (any(isinstance(o, _RISING) for o in ops) and any(isinstance(o, _FALLING) for o in ops))


def _swappable(node: ast.BoolOp, parent: ast.AST | None) -> bool:
    """A swapped operator equal to a directly nested one's would print as `a or (b or c)`: parentheses that no
    one writes around the same operator."""
    new = ast.Or if isinstance(node.op, ast.And) else ast.And
    nested = [v for v in [*node.values, parent] if isinstance(v, ast.BoolOp)]
    return not any(isinstance(n.op, new) for n in nested)


def _sites(tree: ast.AST) -> list[tuple[str, int]]:
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    sites = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare):
            if _flippable(node):
                sites.append(("flip", i))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            # the constant itself changes: no `n + 1 + 1` or `n - 0` is ever written
            sites.append(("off_by_one", i))
        elif isinstance(node, ast.If):
            if _droppable(tree, node):
                sites.append(("drop_branch", i))
        elif isinstance(node, ast.BoolOp):
            if _swappable(node, parents.get(id(node))):
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
        # The branch's own work disappears; its `else` (an `elif` chain's rest) runs in its place.
        _, _, stmts = _container(tree, node)
        at = next(k for k, s in enumerate(stmts) if s is node)
        stmts[at:at + 1] = node.orelse
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
