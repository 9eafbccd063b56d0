"""`rsi report RUN_DIR`: a synthetic run (three iterations, one rejected, every key) and a sparse one (keys missing)
give a page that names every decision and shows every plot whose data exists, each a non-blank PNG; a plot without
data is a note, never an empty image. The e2e test loads the page in headless Chromium and reads back the page's own
check that every image loaded, plus a screenshot that must not be blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from rsi.report import PLOTS, SummaryError, build_report
from rsi.report.cli import main

CHROMIUM = Path("/usr/bin/chromium")
SETUP_CHROMIUM = Path(__file__).resolve().parent.parent / "scripts" / "setup_chromium.sh"
ALL_PNGS = {spec.name for spec in PLOTS}


def _evals(base: float, cand: float, rng: np.random.Generator) -> dict[str, Any]:
    def est(v: float, n: int) -> dict[str, Any]:
        return {"metric": "pass@1", "value": v, "ci95": [max(v - 0.04, 0), min(v + 0.05, 1)], "n": n}

    def delta(d: float, n: int) -> dict[str, Any]:
        return {"delta": d, "ci95": [d - 0.03, d + 0.03], "p": float(rng.uniform(0.01, 1)), "n": n}

    return {
        "kept": {"humaneval": est(base, 164), "python_output": {**est(base + 0.2, 200), "metric": "accuracy"}},
        "candidate": {"humaneval": est(cand, 164), "python_output": {**est(cand + 0.2, 200), "metric": "accuracy"}},
        "gate": {"humaneval": delta(cand - base, 82), "python_output": delta(cand - base, 100)},
        "claim": {"humaneval": delta(cand - base, 82), "python_output": delta(cand - base, 100)},
        "vs_v0": {"humaneval": delta(cand - 0.04, 164), "python_output": delta(cand - 0.04, 200)},
    }


def full_summary() -> list[dict[str, Any]]:
    """Three iterations with every key: v1 kept, v2 rejected, v3 kept (compared with v1)."""
    rng = np.random.default_rng(0)
    steps = ("create_task", "solve", "rank_tasks", "rank_solutions")
    rows = []
    for it, (model_v, new_v, decision, base, cand) in enumerate(
            [(0, 1, "kept", 0.04, 0.08), (1, 2, "rejected", 0.08, 0.05), (1, 3, "kept", 0.08, 0.12)]):
        rows.append({
            "iteration": it, "model_version": model_v, "new_version": new_v,
            "kept_version": new_v if decision == "kept" else model_v, "decision": decision,
            "performances": 36, "judgments": 36, "preferences": 24, "parse_rate": 0.8 + 0.05 * it,
            "parse_rate_per_step": {s: float(rng.uniform(0.2, 1)) for s in steps},
            "pairs_per_step": {s: int(rng.integers(1, 9)) for s in steps},
            "position_bias": {"rank_tasks/1": {"first_shown_wins": 0.9 - 0.1 * it, "chance": 0.25, "judgments": 8},
                              "rank_solutions/1": {"first_shown_wins": 0.6, "chance": 0.5, "judgments": 12}},
            "mean_length": {"chosen": 412.0 + 10 * it, "rejected": 388.5 - 5 * it},
            "dpo_loss": 0.6 - 0.05 * it,
            "dpo_curve": [[s, 0.693 * float(np.exp(-0.01 * s * (it + 1)))] for s in range(1, 41)],
            "seconds": {"startup": 60.1, "corpus_pass": 180.2, "eval": 95.0, "dpo": 372.0, "swap": 0.7},
            "gen_tokens_per_s": 81.2,
            "evals": _evals(base, cand, rng),
            "gate_reasons": ["humaneval: CI below -tolerance"] if decision == "rejected" else [],
        })
    return rows


def sparse_summary() -> list[dict[str, Any]]:
    """An older or cut-short run: evals off, no DPO curve, no position bias or lengths, some keys absent or null."""
    return [
        {"iteration": 0, "model_version": 0, "new_version": 1, "decision": "ungated", "evals": {},
         "parse_rate_per_step": {"create_task": 1.0, "solve": None}, "pairs_per_step": {},
         "seconds": {"startup": 12.0}, "dpo_loss": 0.69},
        {"iteration": 1, "decision": "kept", "parse_rate": 0.5, "position_bias": {}, "mean_length": None},
    ]


def _run(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "summary.json").write_text(json.dumps(rows))
    return tmp_path


def _assert_not_blank(png: Path) -> None:
    pixels = imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, png
    assert float(pixels[..., :3].std()) > 0.02, f"{png} is blank"


def _img_srcs(page: str) -> set[str]:
    return set(re.findall(r'<img src="([^"]+)"', page))


@pytest.mark.unit
def test_full_run_has_every_plot_and_decision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "run", full_summary())
    assert main([str(run)]) == 0
    page = run / "report" / "index.html"
    assert capsys.readouterr().out.strip() == str(page)
    html = page.read_text()
    assert {p.name for p in (run / "report").glob("*.png")} == ALL_PNGS
    assert _img_srcs(html) == ALL_PNGS  # relative paths, so the folder can be moved
    for name in ALL_PNGS:
        _assert_not_blank(run / "report" / name)
    for text in ("kept", "rejected", "humaneval", "python_output", "CI below -tolerance", "v3", "corpus_pass"):
        assert text in html, text
    assert html.count('class="decision"') >= 6  # overview line and heading of each iteration
    assert "http://" not in html and "https://" not in html  # self-contained


@pytest.mark.unit
def test_sparse_run_leaves_out_absent_plots(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", sparse_summary())
    html = build_report(run).read_text()
    pngs = {p.name for p in (run / "report").glob("*.png")}
    assert pngs == {"parse_rate.png"}
    assert _img_srcs(html) == pngs
    _assert_not_blank(run / "report" / "parse_rate.png")
    for spec in PLOTS:
        if spec.name not in pngs:
            assert spec.absent in html, spec.name
    assert "ungated" in html and "kept" in html and "No evaluations this iteration" in html


@pytest.mark.unit
def test_rerun_removes_plots_whose_data_went(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", full_summary())
    build_report(run)
    _run(run, sparse_summary())
    build_report(run)
    assert {p.name for p in (run / "report").glob("*.png")} == {"parse_rate.png"}


@pytest.mark.unit
def test_empty_and_missing_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "empty", [])
    html = build_report(run).read_text()
    assert not list((run / "report").glob("*.png")) and "holds no iterations" in html
    with pytest.raises(SummaryError):
        build_report(tmp_path / "nowhere")
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "summary.json" in capsys.readouterr().err


def _version_evals(run: Path, version: int, drop_branch: list[int], copies: list[int]) -> dict[str, Any]:
    """evals/vN of a version as the loop writes it (judge accuracy with its kinds of mutation, format following
    with its copying), and the metrics the loop puts in summary.json for it."""
    from rsi.evals.compare import load_eval_dir, write_eval_dir
    from rsi.evals.judge_accuracy import good_index
    from rsi.evals.judge_accuracy import score as judge_score
    from rsi.evals.stats import wilson
    from rsi.evals.task import TaskResult

    pairs = [{"id": f"{kind}-{k}", "task_id": "t", "mutation": kind}
             for kind, n in (("drop_branch", len(drop_branch)), ("flip", 20)) for k in range(n)]
    texts = []
    for pair, right in zip(pairs, drop_branch + [0] * 20):  # flips: wrong in both versions
        best = "AB"[good_index(pair) if right else 1 - good_index(pair)]
        texts += [json.dumps({"rationale": "r", "ranking": [best, "B" if best == "A" else "A"]})] * 2
    items = [{"id": f"ff-{k}", "family": "code_review", "step": "write_program", "correct": 1, "copies_example": c}
             for k, c in enumerate(copies)]
    ff = TaskResult("format_following", "parse_rate", 1.0, (0.9, 1.0), len(items), items,
                    {"copies_example": {"value": sum(copies) / len(copies), "ci95": wilson(sum(copies), len(copies)),
                                        "n": len(copies)}})
    write_eval_dir(str(run / "evals" / f"v{version}"), [judge_score(pairs, texts), ff])
    return load_eval_dir(str(run / "evals" / f"v{version}"))[0]


@pytest.mark.unit
def test_task_parts_are_rows_of_their_own_paired_from_the_evaluation_folders(tmp_path: Path) -> None:
    """Judge accuracy per kind of mutation and format following's copying show under their task, with values per
    version and the paired Δ that the evaluation folders give; copying says lower is better."""
    run = tmp_path / "run"
    kept = _version_evals(run, 0, [0] * 40, [1] * 40)
    cand = _version_evals(run, 1, [1] * 40, [0] * 40)
    _run(run, [{"iteration": 0, "model_version": 0, "new_version": 1, "kept_version": 1, "decision": "kept",
                "evals": {"kept": kept, "candidate": cand}}])
    html = build_report(run).read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr class="sub"><td>([^<]+)</td>.*?</tr>', html)}
    assert {"drop_branch", "flip", "copies_example", "same_pick_both_orders"} <= set(rows)
    assert re.search(r"<td>drop_branch</td><td></td><td class=\"num\">0\.000.*?1\.000", rows["drop_branch"])
    assert "lower is better" in rows["copies_example"] and "lower is better" not in rows["drop_branch"]
    # the claim half and vs v0 pair the same versions here; each kind moved on every item of its half
    assert rows["drop_branch"].count('<span class="sig">+1.000') == 3
    assert rows["copies_example"].count('<span class="sig">-1.000') == 3
    assert '<span class="sig">' not in rows["flip"] and "+0.000" in rows["flip"]
    assert html.count('<tr class="sub">') == len(rows)
    # without the folders the parts still show their values, with no Δ
    shutil.rmtree(run / "evals")
    rows = dict(re.findall(r'<tr class="sub"><td>([^<]+)</td>(.*?)</tr>', build_report(run).read_text()))
    assert "1.000" in rows["drop_branch"] and "+1.000" not in rows["drop_branch"]


def _mangle(value: Any, rng: np.random.Generator) -> Any:
    """Each key, at any depth, is dropped or replaced by a wrong type with probability 0.3."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            roll = rng.random()
            if roll < 0.1:
                continue
            out[k] = [None, "x", [], {}, float("nan")][rng.integers(5)] if roll < 0.3 else _mangle(v, rng)
        return out
    if isinstance(value, list):
        return [_mangle(v, rng) for v in value]
    return value


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(4))
def test_malformed_keys_never_break_the_report(tmp_path: Path, seed: int) -> None:
    run = _run(tmp_path / "run", _mangle(full_summary(), np.random.default_rng(seed)))
    html = build_report(run).read_text()
    pngs = {p.name for p in (run / "report").glob("*.png")}
    assert _img_srcs(html) == pngs
    for name in pngs:
        _assert_not_blank(run / "report" / name)


def _chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(SETUP_CHROMIUM)], check=False, timeout=600)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing and {SETUP_CHROMIUM} could not install it (needs root and apt-get)")
    return CHROMIUM


def _chromium_args(profile: Path) -> list[str]:
    # No sandbox: as root Chromium refuses to start with it. The rest keeps a headless run off the network.
    return [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}"]


@pytest.mark.e2e
def test_page_loads_every_image_in_chromium(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", full_summary())
    page = build_report(run)
    args = _chromium_args(tmp_path / "profile")
    start = time.monotonic()
    dom = subprocess.run([*args, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    status = re.search(r'<div id="images-ok"[^>]*>([^<]*)</div>', dom.stdout)
    assert status, dom.stdout[-2000:]
    assert status.group(1).startswith("images-ok"), status.group(1)
    assert f"({len(ALL_PNGS)}/{len(ALL_PNGS)} plots loaded)" in status.group(1)

    shot = tmp_path / "page.png"
    out = subprocess.run([*args, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    _assert_not_blank(shot)
    print(f"chromium checks took {time.monotonic() - start:.1f} s")
