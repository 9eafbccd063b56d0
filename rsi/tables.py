"""The console's tables: what a corpus pass produced per step, and every iteration's versions, gate decision,
held-out metrics and timings."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def step_table(stats: Any) -> Table:
    """A corpus pass (rsi.pipeline.corpus_pass.PassStats) per step."""
    table = Table(title="corpus pass · per step")
    for col in ("step", "rows", "parse rate", "pairs"):
        table.add_column(col, justify="right")
    for step, rows in stats.steps.items():
        table.add_row(step, str(rows), f"{stats.parse_rate.get(step, 0.0):.0%}",
                      str(stats.pairs_per_step.get(step, 0)))
    return table


def _metric(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.2f}, {hi:.2f}]"


def _delta(c: dict[str, Any] | None) -> str:
    return "-" if not c or not c.get("n") else f"{c['delta']:+.3f} (p={c['p']:.2g}, n={c['n']})"


def summary_table(summaries: list[Any]) -> Table:
    """Iterations (rsi.history.IterationSummary): versions, decision, corpus, DPO, seconds; then one row per
    held-out metric: the kept version's and the candidate's value with 95% CI, the paired delta on the gate
    half and on the claim half."""
    table = Table(title="rsi · iterations")
    for col in ("iter", "served → candidate", "decision", "pairs", "parse rate", "DPO loss", "seconds (pass/eval/dpo)",
                "metric", "kept", "candidate", "Δ gate half", "Δ claim half"):
        table.add_column(col, justify="right")
    for s in summaries:
        sec = s.seconds
        head = [str(s.iteration), f"v{s.model_version} → v{s.new_version}", s.decision, str(s.preferences),
                f"{s.parse_rate:.0%}", "-" if s.dpo_loss is None else f"{s.dpo_loss:.4f}",
                f"{sec.get('corpus_pass', 0):.0f}/{sec.get('eval', 0):.0f}/{sec.get('dpo', 0):.0f}"]
        tasks = sorted((s.evals.get("candidate") or {}).keys()) or [""]
        for k, task in enumerate(tasks):
            row = head if k == 0 else [""] * len(head)
            table.add_row(*row, task, _metric((s.evals.get("kept") or {}).get(task)),
                          _metric((s.evals.get("candidate") or {}).get(task)),
                          _delta((s.evals.get("gate") or {}).get(task)), _delta((s.evals.get("claim") or {}).get(task)))
    return table
