"""Corpus statistics, read back from the tables: what `rsi corpus stats DIR` prints.

Per iteration: rows per family/step/level, parse rates per step, position bias per step and level (how often
the first-shown item won, against chance), level-1 judge accuracy against execution (pairwise accuracy and
Kendall tau where candidates carry procedural scores), pairs per step and level, mean chosen/rejected length.
Each iteration is read column by column, never the whole corpus at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from rsi.corpus import counters
from rsi.corpus.schema import TABLES
from rsi.corpus.stream import MANIFEST, read_table
from rsi.input_files import InputFileError, check_fields, read_json


def iteration_dirs(path: Path | str) -> list[Path]:
    """A run folder, its corpus/ folder or one iter_NNN folder → the iteration folders under it, in order."""
    p = Path(path)
    for base in (p / "corpus", p):
        found = sorted(d for d in base.glob("iter_*") if d.is_dir())
        if found:
            return found
    if any((p / t).is_dir() for t in ("performances", "judgments", "preferences")):
        return [p]
    raise FileNotFoundError(f"no corpus iterations under {p}")


def checked_manifest(iter_dir: Path) -> dict[str, Any] | None:
    """The iteration's manifest, None while it has none (incomplete); InputFileError naming it when it is not a
    JSON object with its counts of the right types (a truncated or hand-edited file)."""
    path = iter_dir / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path, dict)
    check_fields(manifest, {"balance_dropped": dict}, str(path), optional=True)
    for step, n in (manifest.get("balance_dropped") or {}).items():
        if isinstance(n, bool) or not isinstance(n, int):
            raise InputFileError(f"{path}: balance_dropped[{step!r}] must be an integer, got {n!r}")
    return manifest


def checked_table(read: Callable[[], pa.Table], where: Path, table_name: str, columns: list[str]) -> pa.Table:
    """`read()`, a table whose `columns` have the types of rsi.corpus.schema's `table_name`; InputFileError naming
    `where` for a file Parquet cannot read or a column of another type, which the tallies would misread."""
    try:
        table = read()
    except (pa.ArrowException, OSError) as e:
        raise InputFileError(f"{where}: cannot read ({e})") from None
    schema = TABLES[table_name]
    for col in columns:
        want, got = schema.field(col).type, table.schema.field(col).type
        if got != want:
            raise InputFileError(f"{where}: column {col!r} is {got}, expected {want}")
    return table


def _read(iter_dir: Path, table_name: str, columns: list[str]) -> pa.Table:
    return checked_table(lambda: read_table(iter_dir, table_name, columns), iter_dir / table_name, table_name,
                         columns)


def _text_len(messages: list[dict[str, str]] | None) -> int:
    return sum(len(m.get("content") or "") for m in messages or [])


def _rows_by(table: Any, keys: tuple[str, ...]) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    cols = [table.column(k).to_pylist() for k in keys]
    return dict(sorted(Counter("/".join(str(c[i]) for c in cols) for i in range(table.num_rows)).items()))


def judge_accuracy(judgments: Any, scores: dict[str, float]) -> dict[str, dict[str, float]]:
    """Level-1 judgments vs execution, per step: share of truth-separated pairs ordered right, and mean tau."""
    out: dict[str, dict[str, float]] = {}
    agree: Counter = Counter()
    total: Counter = Counter()
    taus: defaultdict[str, list[float]] = defaultdict(list)
    for row in judgments.to_pylist():
        if row["level"] != 1 or row["ranking"] is None:
            continue
        truth = [scores.get(c) for c in row["candidate_ids"]]
        if any(t is None for t in truth):
            continue
        pos = {c: k for k, c in enumerate(row["ranking"])}
        right = wrong = 0
        for a in range(len(truth)):
            for b in range(a + 1, len(truth)):
                if truth[a] == truth[b] or a not in pos or b not in pos:
                    continue
                ok = (truth[a] > truth[b]) == (pos[a] < pos[b])
                right, wrong = right + ok, wrong + (not ok)
        if right + wrong:
            agree[row["step"]] += right
            total[row["step"]] += right + wrong
            taus[row["step"]].append((right - wrong) / (right + wrong))
    for step in total:
        out[step] = {"pairwise_accuracy": agree[step] / total[step],
                     "kendall_tau": sum(taus[step]) / len(taus[step]), "judgments": len(taus[step])}
    return out


def iteration_stats(iter_dir: Path) -> dict[str, Any]:
    perf = _read(iter_dir, "performances", ["id", "family", "step", "parse_status", "procedural_score",
                                            "finish_reason"])
    judg = _read(iter_dir, "judgments", ["family", "step", "level", "candidate_ids", "presented_order", "ranking",
                                         "parse_status"])
    pref = _read(iter_dir, "preferences", ["family", "step", "level", "chosen", "rejected"])
    manifest = checked_manifest(iter_dir)

    # The same tallies the writer keeps, so `corpus stats` and a run's own report cannot disagree.
    tallies: counters.Tallies = Counter()
    for name, table in (("performances", perf), ("judgments", judg)):
        for batch in table.to_batches(max_chunksize=10_000):
            counters.count_rows(tallies, name, batch.to_pylist())
    parse = dict(sorted(counters.parse_rate(tallies).items()))
    bias = dict(sorted(counters.position_bias(tallies).items()))

    scores = {i: s for i, s in zip(perf.column("id").to_pylist(), perf.column("procedural_score").to_pylist())
              if s is not None}
    chosen = [_text_len(m) for m in pref.column("chosen").to_pylist()]
    rejected = [_text_len(m) for m in pref.column("rejected").to_pylist()]
    return {
        "iteration": iter_dir.name,
        "complete": manifest is not None,
        "rows": {"performances": _rows_by(perf, ("family", "step")),
                 "judgments": _rows_by(judg, ("family", "step", "level")),
                 "preferences": _rows_by(pref, ("family", "step", "level"))},
        "parse_rate": parse,
        "position_bias": bias,
        "judge_accuracy": judge_accuracy(judg, scores) if scores else {},
        "pairs_per_step": _rows_by(pref, ("step",)),
        "mean_length": {"chosen": sum(chosen) / len(chosen) if chosen else 0.0,
                        "rejected": sum(rejected) / len(rejected) if rejected else 0.0},
        "balance_dropped": (manifest or {}).get("balance_dropped") or {},
    }


def corpus_stats(path: Path | str) -> list[dict[str, Any]]:
    return [iteration_stats(d) for d in iteration_dirs(path)]


def format_stats(stats: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for it in stats:
        lines.append(f"== {it['iteration']}{'' if it['complete'] else ' (incomplete: no manifest)'}")
        for table, rows in it["rows"].items():
            for key, n in rows.items():
                lines.append(f"  rows  {table:<13} {key:<40} {n:>8}")
        for step, rate in it["parse_rate"].items():
            lines.append(f"  parse {step:<54} {rate:>8.1%}")
        for key, b in it["position_bias"].items():
            lines.append(f"  first-shown wins {key:<32} {b['first_shown_wins']:>6.1%} vs chance {b['chance']:.1%}"
                         f" ({b['judgments']} judgments)")
        for step, a in it["judge_accuracy"].items():
            lines.append(f"  judge vs execution {step:<30} accuracy {a['pairwise_accuracy']:.1%}, "
                         f"tau {a['kendall_tau']:+.2f} ({a['judgments']} judgments)")
        for step, n in it["pairs_per_step"].items():
            lines.append(f"  pairs {step:<54} {n:>8}")
        for step, n in it.get("balance_dropped", {}).items():
            lines.append(f"  judgement pairs left out for position balance {step:<14} {n:>8}")
        m = it["mean_length"]
        lines.append(f"  mean length chosen {m['chosen']:.0f} / rejected {m['rejected']:.0f} chars")
    return "\n".join(lines)
