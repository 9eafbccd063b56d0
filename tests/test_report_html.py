"""The report page treats every string from a run's summary.json as text: benchmark and metric names, gate
reasons, step names and decisions may carry model-written or hostile content (`<script>`, `</pre>`, attribute
breakouts), and none of it may become markup. The page is parsed with the standard HTML parser and its element
structure compared with the same run's page rendered from harmless strings: identical tags and attribute names in
the same order, and each hostile string shown back verbatim as text."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fuzz_strategies import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from rsi.report import build_report
from rsi.report.html import render_page

pytestmark = pytest.mark.unit

HOSTILE = [
    "<script>alert(1)</script>",
    "</pre><img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)" x="',
    "' autofocus onfocus='alert(1)' x='",
    "</td></tr></table><h1>forged</h1>",
    "<!-- unterminated comment",
    "</style><style>body{display:none}</style>",
    "</script><script>alert(2)</script>",
    "&lt;already escaped&gt; &amp; <b>bold</b>",
    "]]><![CDATA[",
    "$\\frac{1}{$ _^ mathtext",  # matplotlib parses $...$ in titles: must not break the plots either
    "javascript:alert(1)",
    "\u202eevil\u0000nul",
]


class _Structure(HTMLParser):
    """Start/end tags with their attribute names, in order, plus the text and attribute values the page shows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, ...]] = []
        self.shown: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, *sorted(name for name, _ in attrs)))
        self.shown += [v for _, v in attrs if v]

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("/" + tag,))

    def handle_data(self, data: str) -> None:
        self.shown.append(data)

    def handle_comment(self, data: str) -> None:
        self.tags.append(("<!--",))


def _structure(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


# The slots of `summary` the page prints (benchmarks, the compared-with metric, gate reasons, timing parts);
# the others (the candidate's metric, step names) reach only the plots, and slot 12 is a decision.
PAGE_SLOTS = (0, 1, 2, 4, 5, 6, 7, 13)


def slot(names: list[str], k: int) -> str:
    return names[k % len(names)] + (f" {k}" if k >= len(names) else "")


def summary(names: list[str]) -> list[dict[str, Any]]:
    """One iteration whose every free-text slot k holds `slot(names, k)`."""

    def name(k: int) -> str:
        return slot(names, k)

    est = {"value": 0.5, "ci95": [0.4, 0.6], "n": 10}
    delta = {"delta": 0.1, "ci95": [0.0, 0.2], "p": 0.01, "n": 10}
    benches = [name(0), name(1)]
    return [{
        "iteration": 0, "model_version": 0, "new_version": 1, "decision": "kept", "parse_rate": 0.9,
        "evals": {"kept": {b: {**est, "metric": name(2)} for b in benches},
                  "candidate": {b: {**est, "metric": name(3)} for b in benches},
                  "gate": {b: delta for b in benches}, "claim": {b: delta for b in benches}},
        "gate_reasons": [name(4), name(5)],
        "seconds": {name(6): 1.0, name(7): 2.0},
        "parse_rate_per_step": {name(8): 0.5, name(9): 0.7},
        "pairs_per_step": {name(10): 3},
        "position_bias": {name(11): {"first_shown_wins": 0.5, "chance": 0.5, "judgments": 4}},
    }, {"iteration": 1, "decision": name(12), "gate_reasons": [name(13)]}]


def _benign(n: int) -> list[str]:
    return [f"name{k}" for k in range(n)]


def _assert_inert(hostile_page: str, benign_page: str, names: list[str]) -> None:
    got, want = _structure(hostile_page), _structure(benign_page)
    assert got.tags == want.tags  # not one element, attribute or comment more or less
    shown = "\n".join(got.shown)
    for k in PAGE_SLOTS:
        assert slot(names, k) in shown, f"{slot(names, k)!r} is not shown as text"


def _write(run: Path, rows: list[dict[str, Any]]) -> Path:
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(rows))
    return run


def test_hostile_strings_are_text_in_the_page_and_the_plots(tmp_path: Path) -> None:
    """Through `rsi report` itself, plots included; the run folder's own name is hostile too."""
    page = build_report(_write(tmp_path / "<script>x</script>", summary(HOSTILE))).read_text()
    benign = build_report(_write(tmp_path / "plain", summary(_benign(len(HOSTILE))))).read_text()
    _assert_inert(page, benign, HOSTILE)
    assert "unknown" in page  # a decision outside the known ones is shown as such, never as written
    assert page.count("<script>") == 1  # the page's own image check, nothing else
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


@FUZZ
@given(names=st.lists(st.text(min_size=1, max_size=30).filter(str.strip), min_size=14, max_size=14, unique=True))
def test_any_string_leaves_the_page_structure_alone(names: list[str]) -> None:
    rows_hostile, rows_benign = summary(names), summary(_benign(len(names)))
    _assert_inert(render_page(Path("/runs/x"), rows_hostile, []), render_page(Path("/runs/x"), rows_benign, []),
                  names)
