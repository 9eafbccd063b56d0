"""`rsi report RUN_DIR`: plots and tables of a run's summary.json, written to RUN_DIR/report/index.html with the
plots as PNGs beside it."""

from __future__ import annotations

from pathlib import Path

from rsi.report.data import SummaryError, load_summary
from rsi.report.html import render_page
from rsi.report.plots import PLOTS, write_plots
from rsi.run_dir import RunDir

__all__ = ["PLOTS", "SummaryError", "build_report"]


def build_report(run_dir: Path | str) -> Path:
    """Write RUN_DIR/report/index.html and its PNGs; return the page's path. Raises SummaryError when the run has
    no readable summary.json."""
    run_dir = Path(run_dir).resolve()
    rows = load_summary(run_dir)
    out_dir = RunDir(run_dir).report
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(rows, out_dir)
    page = out_dir / "index.html"
    # Written to a temporary name first, so a browser open on the old page never reads half a file.
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(render_page(run_dir, rows, plots), encoding="utf-8")
    tmp.replace(page)
    return page
