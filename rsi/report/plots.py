"""The report's plots, one matplotlib Figure each, built on the Agg canvas directly (no pyplot): pyplot keeps global
figure state and picks a GUI backend, neither of which a report writer wants. A plot returns None when its data is
absent, so the page says so instead of showing an empty frame."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rsi.report.data import Row, as_dict, iterations, num, step_series, version_scores

# One colour per gate outcome, shared by the plots and the page's tables.
STATUS_COLOURS = {"base": "#1f5fa8", "kept": "#2e7d32", "rejected": "#c62828", "ungated": "#757575",
                  "no_pairs": "#9e9e9e", "unknown": "#757575"}
STATUS_LABELS = {"base": "v0 (base)", "kept": "kept by the gate", "rejected": "rejected by the gate",
                 "ungated": "ungated", "no_pairs": "no pairs: nothing trained", "unknown": "no decision recorded"}
DPI = 110


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _legend(ax, **kw) -> None:  # noqa: ANN001, ANN003
    """Legend outside the axes, on the right: inside, "best" still covers bars or line ends as series grow."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, **kw)


def _iteration_axis(ax, its: list[int]) -> None:  # noqa: ANN001 (matplotlib Axes)
    ax.set_xticks(its, [str(i) for i in its])
    ax.set_xlabel("iteration")
    ax.grid(axis="y", alpha=0.3)


def evals_plot(rows: list[Row]) -> Figure | None:
    """Each benchmark's score per version with its 95% CI; the marker says what the gate did with that version:
    filled for kept (and v0), hollow for rejected, a cross for ungated. The kept lineage is joined by a line."""
    versions = version_scores(rows)
    benches = sorted({b for v in versions for b in v.scores})
    if not benches:
        return None
    ncols = min(3, len(benches))
    nrows = math.ceil(len(benches) / ncols)
    fig = _figure(4.3 * ncols, 3.3 * nrows + 0.5)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    statuses_shown: set[str] = set()
    for ax, bench in zip(axes, benches):
        top = 0.0
        lineage = [(v.version, v.scores[bench].value) for v in versions
                   if bench in v.scores and v.status in ("base", "kept")]
        if len(lineage) > 1:
            ax.plot(*zip(*lineage), color=STATUS_COLOURS["kept"], alpha=0.35, lw=1.5, zorder=1)
        metric = "value"
        for v in versions:
            est = v.scores.get(bench)
            if est is None:
                continue
            metric = est.metric
            lo, hi = est.ci if est.ci else (est.value, est.value)
            yerr = [[max(est.value - lo, 0.0)], [max(hi - est.value, 0.0)]]
            colour = STATUS_COLOURS[v.status]
            marker = {"rejected": "o", "ungated": "X", "unknown": "D", "base": "s"}.get(v.status, "o")
            face = "white" if v.status == "rejected" else colour
            ax.errorbar([v.version], [est.value], yerr=yerr, fmt=marker, ms=8, mfc=face, mec=colour, mew=2,
                        ecolor=colour, elinewidth=1.5, capsize=4, zorder=2)
            statuses_shown.add(v.status)
            top = max(top, hi, est.value)
        vs = [v.version for v in versions if bench in v.scores]
        every = math.ceil(len(vs) / 12)  # a long run's labels would overlap: label every n-th version
        ax.set_xticks(vs[::every], [f"v{x}" for x in vs[::every]])
        ax.set_xlim(min(vs) - 0.5, max(vs) + 0.5)
        ax.set_ylim(0, min(1.0, top * 1.2 + 0.02) if top < 0.85 else 1.02)
        ax.set_title(f"{bench} ({metric})", fontsize=10)
        ax.set_xlabel("version")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(benches):]:  # unused cells of the grid
        ax.set_visible(False)
    handles = []
    for status in ("base", "kept", "rejected", "ungated", "unknown"):
        if status in statuses_shown:
            marker = {"rejected": "o", "ungated": "X", "unknown": "D", "base": "s"}.get(status, "o")
            face = "white" if status == "rejected" else STATUS_COLOURS[status]
            handles.append(Line2D([], [], ls="", marker=marker, ms=8, mfc=face, mec=STATUS_COLOURS[status], mew=2,
                                  label=STATUS_LABELS[status]))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle("Evaluation per version (error bars: 95% CI)")
    return fig


def parse_rate_plot(rows: list[Row]) -> Figure | None:
    series = step_series(rows, "parse_rate_per_step")
    overall = [(it, v) for it, row in zip(iterations(rows), rows) if (v := num(row.get("parse_rate"))) is not None]
    if not series and not overall:
        return None
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    for step, points in sorted(series.items()):
        ax.plot(*zip(*points), marker="o", label=step)
    if overall:
        ax.plot(*zip(*overall), color="black", ls="--", marker="s", label="all steps")
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("parse rate")
    _iteration_axis(ax, sorted({it for pts in [*series.values(), overall] for it, _ in pts}))
    _legend(ax)
    ax.set_title("Parse rate per step")
    return fig


def _grouped_bars(ax, its: list[int], groups: dict[str, dict[int, float]]) -> dict[str, list]:  # noqa: ANN001
    """Bars per iteration, one per group side by side; returns each group's bar containers for annotation."""
    width = 0.8 / max(len(groups), 1)
    bars: dict[str, list] = {}
    for g, (name, values) in enumerate(groups.items()):
        xs = [i + (g - (len(groups) - 1) / 2) * width for i, it in enumerate(its) if it in values]
        ys = [values[it] for it in its if it in values]
        bars[name] = [ax.bar(xs, ys, width * 0.92, label=name), xs]
    ax.set_xticks(range(len(its)), [str(it) for it in its])
    ax.set_xlabel("iteration")
    ax.grid(axis="y", alpha=0.3)
    return bars


def position_bias_plot(rows: list[Row]) -> Figure | None:
    """How often the first-shown candidate wins, per judging step/level, against what chance would give."""
    wins: dict[str, dict[int, float]] = {}
    chance: dict[str, dict[int, float]] = {}
    for it, row in zip(iterations(rows), rows):
        for key, entry in as_dict(row.get("position_bias")).items():
            w = num(as_dict(entry).get("first_shown_wins"))
            if w is not None:
                wins.setdefault(str(key), {})[it] = w
                c = num(as_dict(entry).get("chance"))
                if c is not None:
                    chance.setdefault(str(key), {})[it] = c
    if not wins:
        return None
    its = sorted({it for v in wins.values() for it in v})
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    groups = dict(sorted(wins.items()))
    bars = _grouped_bars(ax, its, groups)
    width = 0.8 / len(groups)
    for key, (_, xs) in bars.items():
        for x, it in zip(xs, [it for it in its if it in groups[key]]):
            if it in chance.get(key, {}):
                ax.hlines(chance[key][it], x - width / 2, x + width / 2, colors="black", lw=2, zorder=3)
    handles, _ = ax.get_legend_handles_labels()
    if chance:
        handles.append(Line2D([], [], color="black", lw=2, label="chance"))
    _legend(ax, handles=handles)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("first-shown win rate")
    ax.set_title("Position bias of the judges")
    return fig


def lengths_plot(rows: list[Row]) -> Figure | None:
    groups: dict[str, dict[int, float]] = {"chosen": {}, "rejected": {}}
    for it, row in zip(iterations(rows), rows):
        for side in groups:
            v = num(as_dict(row.get("mean_length")).get(side))
            if v is not None:
                groups[side][it] = v
    its = sorted({it for g in groups.values() for it in g})
    if not its:
        return None
    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    _grouped_bars(ax, its, groups)
    ax.set_ylabel("mean length (characters)")
    _legend(ax)
    ax.set_title("Chosen vs rejected mean length")
    return fig


def pairs_plot(rows: list[Row]) -> Figure | None:
    """Preference pairs each step contributed, stacked per iteration with the total on top."""
    series = step_series(rows, "pairs_per_step")
    if not series:
        return None
    its = sorted({it for pts in series.values() for it, _ in pts})
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    bottom = [0.0] * len(its)
    for step, points in sorted(series.items()):
        values = dict(points)
        ys = [values.get(it, 0.0) for it in its]
        ax.bar(range(len(its)), ys, 0.6, bottom=bottom, label=step)
        bottom = [b + y for b, y in zip(bottom, ys)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:g}", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(its)), [str(it) for it in its])
    ax.set_xlabel("iteration")
    ax.set_ylim(0, max(max(bottom) * 1.12, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylabel("pairs")
    _legend(ax)
    ax.set_title("Preference pairs per step")
    return fig


def dpo_loss_plot(rows: list[Row]) -> Figure | None:
    curves: list[tuple[str, list[tuple[float, float]]]] = []
    for it, row in zip(iterations(rows), rows):
        curve = row.get("dpo_curve")
        points = [(s, loss) for p in (curve if isinstance(curve, list) else [])
                  if isinstance(p, list | tuple) and len(p) == 2
                  and (s := num(p[0])) is not None and (loss := num(p[1])) is not None]
        if points:
            curves.append((f"iteration {it} ({row.get('decision', '?')})", points))
    if not curves:
        return None
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    for label, points in curves:
        ax.plot(*zip(*points), marker="." if len(points) < 40 else None, label=label)
    ax.axhline(math.log(2), color="grey", ls=":", lw=1, label="ln 2 (untrained)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("DPO loss")
    ax.grid(alpha=0.3)
    _legend(ax)
    ax.set_title("DPO loss")
    return fig


@dataclass(frozen=True)
class PlotSpec:
    name: str  # the PNG's file name under report/
    title: str
    absent: str  # the page's note when the data is missing
    build: Callable[[list[Row]], Figure | None]


PLOTS = (
    PlotSpec("evals.png", "Evaluation per version", "No evaluations in this run (evals off or not reached).",
             evals_plot),
    PlotSpec("parse_rate.png", "Parse rate per step", "No parse rates recorded.", parse_rate_plot),
    PlotSpec("position_bias.png", "Position bias of the judges", "No position-bias counts recorded.",
             position_bias_plot),
    PlotSpec("lengths.png", "Chosen vs rejected length", "No mean lengths recorded.", lengths_plot),
    PlotSpec("pairs.png", "Pairs per step", "No pair counts recorded.", pairs_plot),
    PlotSpec("dpo_loss.png", "DPO loss", "No DPO loss curves recorded (an older run, or no training).",
             dpo_loss_plot),
)


def write_plots(rows: list[Row], out_dir: Path) -> list[tuple[PlotSpec, Path | None]]:
    """Each plot's PNG under out_dir, or None where its data is absent. A PNG left from an earlier report whose data
    is now absent is removed, so the folder never shows a plot the page does not."""
    written: list[tuple[PlotSpec, Path | None]] = []
    for spec in PLOTS:
        path = out_dir / spec.name
        # Benchmark, metric and step names are data: a '$' in one must print, not start mathtext (which raises
        # on a malformed formula and would take the whole report down).
        with rc_context({"text.parse_math": False}):
            fig = spec.build(rows)
            if fig is None:
                path.unlink(missing_ok=True)
                written.append((spec, None))
                continue
            fig.savefig(path, format="png", dpi=DPI, facecolor="white")
        written.append((spec, path))
    return written
