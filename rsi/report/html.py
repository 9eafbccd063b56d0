"""The report page: one self-contained HTML file (inline CSS, one small inline script, no network) with the plots
referenced by relative path, so the report folder can be copied or served as is."""

from __future__ import annotations

from html import escape
from pathlib import Path

from rsi.evals.compare import LOWER_IS_BETTER
from rsi.report.data import (
    Estimate,
    Row,
    as_dict,
    ci95,
    decision_of,
    estimates,
    iteration_of,
    num,
    paired_sub_rows,
    sub_metrics,
)
from rsi.report.plots import STATUS_COLOURS, PlotSpec

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 22px 0 6px; }
.muted { color: #666; } .note { color: #666; font-style: italic; margin: 4px 0 14px; }
figure { margin: 10px 0 22px; } figure img { max-width: 100%; border: 1px solid #e4e4e4; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } small { color: #555; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.sub td { font-size: 12px; color: #444; } tr.sub td:first-child { padding-left: 22px; }
.decision { font-weight: 700; padding: 1px 6px; border-radius: 3px; color: #fff; }
.sig { font-weight: 700; } ul.reasons { margin: 4px 0; }
#images-ok { color: #666; font-size: 12px; margin-top: 28px; }
"""

# The page's own check that its plots loaded (the browser test reads it from the DOM); runs from the file itself.
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images), bad = [];
  imgs.forEach(function (img) {
    if (!(img.complete && img.naturalWidth > 0)) { bad.push(img.getAttribute("src")); }
  });
  var el = document.getElementById("images-ok");
  el.textContent = (bad.length ? "images-failed: " + bad.join(" ") : "images-ok") +
                   " (" + (imgs.length - bad.length) + "/" + imgs.length + " plots loaded)";
  el.setAttribute("data-loaded", String(imgs.length - bad.length));
  el.setAttribute("data-total", String(imgs.length));
});
"""


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(x: object, signed: bool = False) -> str:
    c = ci95(x)
    return f" [{_fmt(c[0], signed)}, {_fmt(c[1], signed)}]" if c else ""


def _decision(decision: str) -> str:
    colour = STATUS_COLOURS.get(decision, STATUS_COLOURS["unknown"])
    return f'<span class="decision" style="background:{colour}">{escape(decision)}</span>'


def _version(x: object) -> str:
    v = num(x)
    return f"v{int(v)}" if v is not None else "–"


def _overview(rows: list[Row]) -> str:
    """One line per iteration: versions, decision, corpus sizes, throughput and total seconds."""
    head = ("<tr><th>iteration</th><th>compared with</th><th>candidate</th><th>kept after</th><th>decision</th>"
            "<th>performances</th><th>judgments</th><th>preferences</th><th>parse rate</th><th>DPO loss</th>"
            "<th>gen tok/s</th><th>seconds</th></tr>")
    body = []
    for index, row in enumerate(rows):
        secs = [v for v in as_dict(row.get("seconds")).values() if num(v) is not None]
        cells = [str(iteration_of(row, index)), _version(row.get("model_version")), _version(row.get("new_version")),
                 _version(row.get("kept_version")), _decision(decision_of(row))]
        cells += [_count(row.get(k)) for k in ("performances", "judgments", "preferences")]
        cells += [_fmt(num(row.get("parse_rate"))), _fmt(num(row.get("dpo_loss"))),
                  _count(row.get("gen_tokens_per_s"), "{:.1f}"), f"{sum(secs):.0f}" if secs else "–"]
        body.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i != 4 else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _count(x: object, fmt: str = "{:g}") -> str:
    v = num(x)
    return fmt.format(v) if v is not None else "–"


def _delta(entry: object) -> str:
    """`+0.010 p=0.62` over `[-0.020, +0.040] n=82`, bold when p < 0.05, so a real difference stands out."""
    entry = as_dict(entry)
    d = num(entry.get("delta"))
    if d is None:
        return "–"
    p, n = num(entry.get("p")), num(entry.get("n"))
    head = _fmt(d, signed=True) + (f" p={p:.2g}" if p is not None else "")
    if p is not None and p < 0.05:
        head = f'<span class="sig">{head}</span>'
    return head + _detail(_ci(entry.get("ci95"), signed=True), n)


def _detail(ci: str, n: float | None) -> str:
    """The interval and sample size on a second, smaller line: on one line the table outgrows the page."""
    text = (ci.strip() + (f" n={int(n)}" if n is not None else "")).strip()
    return f"<br><small>{text}</small>" if text else ""


PAIRED = ("gate", "claim", "vs_v0")


def _estimate(e: Estimate | None) -> str:
    return _fmt(e.value) + _detail(_ci(list(e.ci) if e.ci else None), e.n) if e else "–"


def _table_row(cells: list[str], sub: bool = False) -> str:
    return ('<tr class="sub">' if sub else "<tr>") + "".join(
        f'<td class="num">{c}</td>' if i > 1 else f"<td>{c}</td>" for i, c in enumerate(cells)) + "</tr>"


def _sub_rows(bench: str, evals: dict, breakdown: dict[str, dict]) -> list[str]:
    """A task's parts under it: its extra metrics' values, and their paired Δ where the evaluation folders allow."""
    kept, cand = (sub_metrics(as_dict(evals.get(side)).get(bench)) for side in ("kept", "candidate"))
    prefix = bench + "."
    paired = {k: {name[len(prefix):]: r for name, r in as_dict(breakdown.get(k)).items() if name.startswith(prefix)}
              for k in PAIRED}
    names = sorted(set(kept) | set(cand) | {name for block in paired.values() for name in block})
    out = []
    for name in names:
        note = "lower is better" if prefix + name in LOWER_IS_BETTER else ""
        cells = [escape(name), note, _estimate(kept.get(name)), _estimate(cand.get(name))]
        out.append(_table_row(cells + [_delta(paired[k].get(name)) for k in PAIRED], sub=True))
    return out


def _metrics_table(row: Row, breakdown: dict[str, dict] | None = None) -> str:
    """Each benchmark's metric, then its parts; `breakdown` holds the parts' paired rows (paired_sub_rows)."""
    evals = as_dict(row.get("evals"))
    kept, cand = estimates(evals.get("kept")), estimates(evals.get("candidate"))
    paired = {k: as_dict(evals.get(k)) for k in PAIRED}
    benches = sorted(set(kept) | set(cand) | {b for block in paired.values() for b in block})
    if not benches:
        return '<p class="note">No evaluations this iteration.</p>'
    base, new = _version(row.get("model_version")), _version(row.get("new_version"))
    head = (f"<tr><th>benchmark</th><th>metric</th><th>{base} (compared with)</th><th>{new} (candidate)</th>"
            "<th>Δ gate half</th><th>Δ claim half</th><th>Δ vs v0 (claim half)</th></tr>")
    body = []
    for b in benches:
        est = kept.get(b) or cand.get(b)
        cells = [escape(b), escape(est.metric) if est else "–", _estimate(kept.get(b)), _estimate(cand.get(b))]
        body.append(_table_row(cells + [_delta(paired[k].get(b)) for k in PAIRED]))
        body += _sub_rows(b, evals, breakdown or {})
    return f"<table>{head}{''.join(body)}</table>"


def _seconds_table(row: Row) -> str:
    secs = {str(k): v for k, x in as_dict(row.get("seconds")).items() if (v := num(x)) is not None}
    if not secs:
        return ""
    head = "".join(f"<th>{escape(k)}</th>" for k in secs) + "<th>total</th>"
    cells = "".join(f'<td class="num">{v:.1f}</td>' for v in secs.values())
    return f"<table><tr>{head}</tr><tr>{cells}<td class=\"num\">{sum(secs.values()):.1f}</td></tr></table>"


def _iteration_section(run_dir: Path, row: Row, index: int) -> str:
    it = iteration_of(row, index)
    decision = decision_of(row)
    parts = [f"<h3>Iteration {it}: {_version(row.get('model_version'))} → candidate "
             f"{_version(row.get('new_version'))} {_decision(decision)}</h3>",
             _metrics_table(row, paired_sub_rows(run_dir, row))]
    raw = row.get("gate_reasons")
    reasons = [str(r) for r in raw if r] if isinstance(raw, list) else []
    if reasons:
        parts.append("<div>Gate reasons:<ul class=\"reasons\">"
                     + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul></div>")
    secs = _seconds_table(row)
    if secs:
        parts.append("<div>Seconds per part:</div>" + secs)
    return "\n".join(parts)


def render_page(run_dir: Path, rows: list[Row], plots: list[tuple[PlotSpec, Path | None]]) -> str:
    counts = {d: sum(decision_of(r) == d for r in rows) for d in ("kept", "rejected", "ungated")}
    summary = ", ".join(f"{n} {d}" for d, n in counts.items() if n) or "no decisions recorded"
    figures = []
    for spec, path in plots:
        if path is None:
            figures.append(f'<p class="note">{escape(spec.title)}: {escape(spec.absent)}</p>')
        else:
            # No caption: the PNG carries its title, so it reads the same opened on its own.
            figures.append(f'<figure><img src="{escape(path.name)}" alt="{escape(spec.title)}"></figure>')
    iterations = [_iteration_section(run_dir, row, i) for i, row in enumerate(rows)]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rsi report: {escape(run_dir.name)}</title>
<style>{CSS}</style>
</head><body>
<h1>rsi run report</h1>
<div class="muted">{escape(str(run_dir))} · {len(rows)} iteration{'s' if len(rows) != 1 else ''} · {summary}</div>
<h2>Iterations</h2>
{_overview(rows) if rows else '<p class="note">summary.json holds no iterations.</p>'}
<h2>Plots</h2>
{''.join(figures)}
<h2>Per iteration</h2>
<p class="muted">Values with 95% CI; Δ is candidate minus compared-with version, paired on the gate half (what the
gate decided on), the claim half (held out from the gate) and against v0 on the claim half; bold where p &lt; 0.05.
A benchmark's parts (per kind of mutation, per step, …) follow it, paired where the run's evaluation folders
are on disk; a part marked "lower is better" improves when it falls.</p>
{''.join(iterations)}
<div id="images-ok">images not checked (scripts off)</div>
<script>{CHECK_SCRIPT}</script>
</body></html>
"""
