"""The console's tables: what a corpus pass produced per step, and every iteration's versions, gate decision,
held-out metrics and timings."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def add_text_row(table: Table, *cells: object) -> None:
    """A row shown as written: names that come from data (a family, a task, a step, a path) may hold `[…]`,
    which rich would read as markup, and a closing tag it never opened crashes the print."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def step_table(stats: Any) -> Table:
    """A corpus pass (rsi.pipeline.corpus_pass.PassStats) per step."""
    table = Table(title="corpus pass · per step")
    for col in ("step", "rows", "parse rate", "pairs"):
        table.add_column(col, justify="right")
    for step, rows in stats.steps.items():
        add_text_row(table, step, str(rows), f"{stats.parse_rate.get(step, 0.0):.0%}",
                      str(stats.pairs_per_step.get(step, 0)))
    return table


def _metric(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.2f},{hi:.2f}]"


def _delta(c: dict[str, Any] | None) -> str:
    return "-" if not c or not c.get("n") else f"{c['delta']:+.3f} p={c['p']:.2g} n={c['n']}"


def summary_table(summaries: list[Any]) -> Group:
    """Iterations (rsi.history.IterationSummary): versions, decision, corpus, DPO and seconds per part; then
    each held-out metric of the kept version and of the candidate with its 95% CI, and the paired deltas on the
    gate half and on the claim half."""
    runs = Table(title="rsi · iterations")
    for col in ("iter", "served → candidate", "decision", "pairs", "parse rate", "DPO loss", "pass s", "eval s",
                "DPO s", "swap s", "tokens/s", "engine busy"):
        runs.add_column(col, justify="right")
    metrics = Table(title="held-out metrics (95% CI) · paired Δ candidate − kept")
    for col in ("iter", "metric", "kept", "candidate", "Δ gate half", "Δ claim half", "Δ vs v0 (claim half)"):
        metrics.add_column(col, justify="right")
    for s in summaries:
        sec = s.seconds
        add_text_row(runs, str(s.iteration), f"v{s.model_version} → v{s.new_version}", s.decision, str(s.preferences),
                     f"{s.parse_rate:.0%}", "-" if s.dpo_loss is None else f"{s.dpo_loss:.4f}",
                     *(f"{sec.get(k, 0.0):.0f}" for k in ("corpus_pass", "eval", "dpo")),
                     f"{sec.get('swap', 0.0):.2f}", f"{s.gen_tokens_per_s:.0f}",
                     "-" if s.engine_busy is None else f"{s.engine_busy:.0%}")
        ev = s.evals
        for task in sorted((ev.get("candidate") or {}).keys()):
            add_text_row(metrics, str(s.iteration), task, _metric((ev.get("kept") or {}).get(task)),
                            _metric((ev.get("candidate") or {}).get(task)), _delta((ev.get("gate") or {}).get(task)),
                            _delta((ev.get("claim") or {}).get(task)), _delta((ev.get("vs_v0") or {}).get(task)))
    return Group(runs, metrics) if metrics.row_count else Group(runs)
