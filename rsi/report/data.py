"""Reading a run's summary.json. Any key may be missing, empty or malformed in a real file (evals off, an older run
without dpo_curve, a crash mid-iteration), and the report must still render the rest, so every accessor here
returns None or an empty container instead of raising."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsi.input_files import read_json
from rsi.run_dir import RunDir

Row = dict[str, Any]

# Gate decisions as the loop writes them; "base" marks v0, which no gate decided.
DECISIONS = ("kept", "rejected", "ungated", "no_pairs")


class SummaryError(ValueError):
    """summary.json is absent, unreadable or not a JSON list: there is nothing to report."""


def load_summary(run_dir: Path) -> list[Row]:
    path = RunDir(run_dir).summary
    if not path.exists():
        raise SummaryError(f"{path}: no such file (is {run_dir} a run folder?)")
    data = read_json(path, list, SummaryError)  # one object per iteration
    return [row for row in data if isinstance(row, dict)]


def num(x: Any) -> float | None:
    """A finite number, or None: bools, strings, NaN and inf are treated as absent rather than plotted."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def as_dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def ci95(x: Any) -> tuple[float, float] | None:
    if isinstance(x, list | tuple) and len(x) == 2:
        lo, hi = num(x[0]), num(x[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    return None


def iteration_of(row: Row, index: int) -> int:
    """The row's iteration number; its position in the list when the key is absent."""
    it = num(row.get("iteration"))
    return int(it) if it is not None else index


def decision_of(row: Row) -> str:
    d = row.get("decision")
    return d if d in DECISIONS else "unknown"


def iterations(rows: list[Row]) -> list[int]:
    return [iteration_of(row, i) for i, row in enumerate(rows)]


def step_series(rows: list[Row], key: str) -> dict[str, list[tuple[int, float]]]:
    """`{step: [(iteration, value), ...]}` from a per-step mapping such as parse_rate_per_step or pairs_per_step."""
    series: dict[str, list[tuple[int, float]]] = {}
    for it, row in zip(iterations(rows), rows):
        for step, value in as_dict(row.get(key)).items():
            v = num(value)
            if v is not None:
                series.setdefault(str(step), []).append((it, v))
    return series


@dataclass(frozen=True)
class Estimate:
    """One benchmark's score of one version: the metric's value with its 95% interval."""

    metric: str
    value: float
    ci: tuple[float, float] | None
    n: int | None


def estimates(evals: Any) -> dict[str, Estimate]:
    """`{benchmark: Estimate}` from an evals block such as evals.kept or evals.candidate; malformed entries dropped."""
    out: dict[str, Estimate] = {}
    for bench, entry in as_dict(evals).items():
        entry = as_dict(entry)
        value = num(entry.get("value"))
        if value is None:
            continue
        n = num(entry.get("n"))
        out[str(bench)] = Estimate(str(entry.get("metric") or "value"), value, ci95(entry.get("ci95")),
                                   int(n) if n is not None else None)
    return out


@dataclass(frozen=True)
class VersionScore:
    """A model version's evaluation, with how it came to be: v0 is the base; every later version is a candidate
    whose gate kept or rejected it (or that ran ungated)."""

    version: int
    status: str  # "base" | "kept" | "rejected" | "ungated" | "unknown"
    iteration: int | None
    scores: dict[str, Estimate]


def version_scores(rows: list[Row]) -> list[VersionScore]:
    """Every version evaluated in the run, once each, in version order. A version compared with again in a later
    iteration (the kept one, after a rejection) keeps its first evaluation, so a point is never drawn twice."""
    seen: dict[int, VersionScore] = {}
    previous_kept = 0
    for index, row in enumerate(rows):
        it = iteration_of(row, index)
        evals = as_dict(row.get("evals"))
        base_v = num(row.get("model_version"))
        base = int(base_v) if base_v is not None else previous_kept
        # Without new_version the loop's numbering is assumed: iteration i's candidate is version i + 1.
        new_v = num(row.get("new_version"))
        new = int(new_v) if new_v is not None else it + 1
        kept_scores = estimates(evals.get("kept"))
        if kept_scores and base not in seen:
            seen[base] = VersionScore(base, "base" if base == 0 else "kept", None, kept_scores)
        cand_scores = estimates(evals.get("candidate"))
        if cand_scores and new not in seen:
            seen[new] = VersionScore(new, decision_of(row), it, cand_scores)
        kept_v = num(row.get("kept_version"))
        previous_kept = int(kept_v) if kept_v is not None else (new if decision_of(row) == "kept" else base)
    return [seen[v] for v in sorted(seen)]


# What a task's entry in an evals block holds besides its extra metrics (rsi.evals.compare.write_eval_dir).
RESERVED = ("metric", "value", "ci95", "n")


def sub_metrics(entry: Any) -> dict[str, Estimate]:
    """A task's extra metrics (per kind of mutation, per step, copying, …), each named as `rsi eval compare` names
    its row after the task: `accuracy.flip` of metric `accuracy` is `flip`."""
    entry = as_dict(entry)
    prefix = f"{entry.get('metric')}."
    out = {}
    for name, extra in entry.items():
        value = num(as_dict(extra).get("value"))
        if name in RESERVED or value is None:
            continue
        n = num(as_dict(extra).get("n"))
        sub = name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name
        out[sub] = Estimate("", value, ci95(as_dict(extra).get("ci95")), int(n) if n is not None else None)
    return out


def paired_sub_rows(run_dir: Path, row: Row) -> dict[str, dict[str, Any]]:
    """{"gate" | "claim" | "vs_v0": {"task.sub": paired row}} for the iteration's two versions, from their
    evaluation folders (run.dir/evals/vN): the summary pairs each task as a whole only, and a task's parts (judge
    accuracy per kind of mutation, format following per step, its copying) can move apart. Empty where a folder
    is missing or unreadable."""
    from rsi.evals.compare import EvalDirError, compare_dirs

    base, new = num(row.get("model_version")), num(row.get("new_version"))
    if base is None or new is None:
        return {}

    def folder(version: float) -> str:
        return str(RunDir(run_dir).evals(int(version)))

    out: dict[str, dict[str, Any]] = {}
    for block, (a, half) in {"gate": (base, "gate"), "claim": (base, "claim"), "vs_v0": (0, "claim")}.items():
        try:
            rows = compare_dirs(folder(a), folder(new), half)
        except (EvalDirError, OSError, ValueError):
            continue
        out[block] = {name: r for name, r in rows.items() if "." in name}
    return out
