"""Evaluation directories and the paired comparison of two of them.

An evaluation directory holds `metrics.json` (`{task: {"metric", "value", "ci95": [lo, hi], "n", <extra
metric>: {"value", "ci95", "n"}, ...}}`) and one `TASK.jsonl` per task (one scored item per line, at least
`id` and `correct`). Two versions evaluated on the same items are compared item by item (rsi.evals.stats).

    rsi eval compare DIR_A DIR_B [--half gate|claim] [--json]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rsi.cli_args import ArgParser
from rsi.evals.stats import compare_items
from rsi.evals.task import TaskResult, half_of
from rsi.input_files import check_fields, read_json, read_json_lines

METRICS = "metrics.json"


class EvalDirError(ValueError):
    """An evaluation directory that cannot be read; the message names the file (and line)."""


def _write_atomic(path: str, text: str) -> None:
    # A crash mid-write must not leave a truncated file that a later compare would read as complete.
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_eval_dir(out_dir: str, results: Sequence[TaskResult]) -> None:
    """metrics.json (metric, value, ci95, n and each extra metric per task) and TASK.jsonl (the items)."""
    from rsi.corpus.text import clean_value

    os.makedirs(out_dir, exist_ok=True)
    metrics: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.task in metrics:
            raise ValueError(f"task {r.task!r} appears twice in the results")
        entry: dict[str, Any] = {"metric": r.metric, "value": r.value, "ci95": list(r.ci95), "n": r.n}
        for name, extra in r.extra.items():
            if name in entry:
                raise ValueError(f"task {r.task!r}: extra metric {name!r} clashes with a reserved key")
            entry[name] = extra
        metrics[r.task] = entry
        # Items hold model text: through the corpus' one cleaning path, so no lone surrogate fails the write
        lines = "".join(json.dumps(clean_value(it), ensure_ascii=False) + "\n" for it in r.items)
        _write_atomic(os.path.join(out_dir, f"{r.task}.jsonl"), lines)
    # metrics.json last: a directory with it lists only tasks whose items are already on disk.
    _write_atomic(os.path.join(out_dir, METRICS), json.dumps(metrics, indent=2, sort_keys=True) + "\n")


# The fields of an item a comparison reads, and their JSON types; the optional ones may be absent or null.
ITEM_FIELDS: dict[str, type | tuple[type, ...]] = {"id": (str, int), "correct": (int, float, bool)}
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {"copies_example": (int, bool), "mutation": str,
                                                       "family": str, "step": str}


def _read_items(path: str) -> list[dict[str, Any]]:
    items = []
    for lineno, item in read_json_lines(path, EvalDirError):
        where = f"{path}:{lineno}"
        check_fields(item, ITEM_FIELDS, where, EvalDirError)
        check_fields(item, OPTIONAL_FIELDS, where, EvalDirError, optional=True)
        if not 0 <= item["correct"] <= 1:
            raise EvalDirError(f"{where}: field 'correct' must be from 0 to 1, got {item['correct']!r}")
        items.append(item)
    return items


def load_eval_dir(path: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(metrics, {task: items}) of an evaluation directory; EvalDirError naming the file otherwise."""
    mpath = os.path.join(path, METRICS)
    if not os.path.exists(mpath):
        raise EvalDirError(f"{mpath}: missing (not an evaluation directory?)")
    metrics = read_json(mpath, dict, EvalDirError)
    if not all(isinstance(v, dict) for v in metrics.values()):
        raise EvalDirError(f"{mpath}: expected {{task: {{metric, value, ci95, n}}}}")
    items = {}
    for task in metrics:
        ipath = os.path.join(path, f"{task}.jsonl")
        if not os.path.exists(ipath):
            raise EvalDirError(f"{ipath}: missing (task {task!r} is listed in {mpath})")
        items[task] = _read_items(ipath)
        n = metrics[task].get("n")
        if isinstance(n, int) and not isinstance(n, bool) and n != len(items[task]):  # cut short, or another run's
            raise EvalDirError(f"{ipath}: {len(items[task])} items where {mpath} counts n={n}")
    return metrics, items


def _same_pick(item: dict[str, Any]) -> int:
    return int(item.get("pick_AB") is not None and item.get("pick_AB") == item.get("pick_BA"))


def _copies_example(item: dict[str, Any]) -> int | None:
    copies = item.get("copies_example")
    return None if copies is None else int(copies)


# Item-level properties compared like a task's own metric, as `task.name` rows, over the items that have the
# property (None: not applicable): the judge's position consistency (the same candidate picked in both shown
# orders; an invalid answer counts as not) moves before its accuracy does, and is what a position-biased judge
# gets wrong; a program that repeats its prompt's example parses, so only this row shows the copying.
SECONDARY: dict[str, dict[str, Callable[[dict[str, Any]], float | None]]] = {
    "judge_accuracy": {"same_pick_both_orders": _same_pick},
    "format_following": {"copies_example": _copies_example},
    # a negotiation's deal, its validity, the plain share and a provable lie, each paired by scenario
    "negotiation": {key: (lambda item, key=key: item.get(key))
                    for key in ("deal", "valid_deal", "utility_share", "provable_lie")},
}
# Rows where a fall is the improvement; every other row is better higher.
LOWER_IS_BETTER = {"format_following.copies_example", "negotiation.provable_lie"}


# Groups of a task's items also compared on their own, as `task.group` rows (an item in no group, None, is in no
# row): format following's parse rate per family and step, since training one family's format can lift it while
# another's falls and the mean hides both; judge accuracy per kind of mutation, since a judge may learn to see one
# kind of bug long before another.
GROUPS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "format_following": lambda item: f"{item.get('family')}.{item.get('step')}",
    "judge_accuracy": lambda item: item.get("mutation") or None,
}


def _row(name: str, c: dict[str, Any]) -> dict[str, Any]:
    return {**c, "ci95": list(c["ci95"]), "better": "lower" if name in LOWER_IS_BETTER else "higher"}


def _property(items: list[dict[str, Any]], prop: Callable[[dict[str, Any]], float | None]) -> list[dict[str, Any]]:
    return [{"id": it["id"], "correct": v} for it in items if (v := prop(it)) is not None]


def compare_dirs(dir_a: str, dir_b: str, half: str | None = None) -> dict[str, dict[str, Any]]:
    """{task: {"delta", "ci95", "p", "n", "better"}} for each task both directories hold, B relative to A, plus a
    `task.property` row for each of the task's SECONDARY properties and a `task.group` row for each of its
    GROUPS; "better" says which way is an improvement ("higher", or "lower" for LOWER_IS_BETTER rows). `half`
    ("gate" or "claim") keeps that half of every set alone (rsi.evals.task.half_of): the loop's gate decides on
    the gate half, so improvement is claimed on the other."""
    if half not in (None, "gate", "claim"):
        raise ValueError(f"half must be 'gate' or 'claim' (got {half!r})")
    _, items_a = load_eval_dir(dir_a)
    _, items_b = load_eval_dir(dir_b)
    out = {}
    for task in sorted(items_a.keys() & items_b.keys()):
        a, b = ([it for it in items[task] if half is None or half_of(str(it["id"])) == half]
                for items in (items_a, items_b))
        out[task] = _row(task, compare_items(a, b))
        for name, prop in SECONDARY.get(task, {}).items():
            # evaluations from before a property existed have no row for it
            if any(prop(it) is not None for it in items_a[task] + items_b[task]):
                out[f"{task}.{name}"] = _row(f"{task}.{name}", compare_items(_property(a, prop), _property(b, prop)))
        if task in GROUPS:
            group_of = GROUPS[task]
            for group in sorted({g for it in a if (g := group_of(it)) is not None}):
                rows = compare_items(*([it for it in items if group_of(it) == group] for items in (a, b)))
                out[f"{task}.{group}"] = _row(f"{task}.{group}", rows)
    return out


def _table(dir_a: str, dir_b: str, rows: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rsi.tables import add_text_row

    table = Table(title=Text(f"{dir_b} vs {dir_a} (paired, B - A)"))
    for col in ("task", "delta", "95% CI", "p (McNemar)", "n"):
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    names = {task: task + (" (lower is better)" if r.get("better") == "lower" else "") for task, r in rows.items()}
    for task, r in rows.items():
        lo, hi = r["ci95"]
        add_text_row(table, names[task], f"{r['delta']:+.3f}", f"[{lo:+.3f}, {hi:+.3f}]", f"{r['p']:.3g}", str(r["n"]))
    # wide enough for `format_following.code_review.write_program` and its figures uncut, also in a pipe (80)
    name_width = max((len(name) for name in names.values()), default=4)
    Console(width=max(Console().width, name_width + 65)).print(table)


def main(argv: list[str] | None = None) -> int:
    p = ArgParser(prog="rsi eval compare", description="Paired comparison of two evaluations.")
    p.add_argument("dir_a", help="evaluation directory of the baseline (A)")
    p.add_argument("dir_b", help="evaluation directory of the candidate (B)")
    p.add_argument("--half", choices=("gate", "claim"), default=None,
                   help="compare one half of every set only (the loop's gate decides on 'gate')")
    p.add_argument("--json", action="store_true", help="print {task: {delta, ci95, p, n, better}} as JSON")
    args = p.parse_args(argv)
    try:
        rows = compare_dirs(args.dir_a, args.dir_b, args.half)
    except (EvalDirError, OSError) as exc:
        print(f"rsi eval compare: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"rsi eval compare: {args.dir_a} and {args.dir_b} share no task", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(args.dir_a, args.dir_b, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
