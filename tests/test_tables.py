"""The console's tables print names from data as they are: a family, task or step named like rich markup
(`[/bold]`, `[red]`) neither crashes a table nor restyles it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from rsi.history import IterationSummary
from rsi.pipeline.corpus_pass import PassStats
from rsi.tables import step_table, summary_table

pytestmark = pytest.mark.unit

MARKUP = "[/bold]fam[red]ily"


def _render(renderable: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=300, force_terminal=False).print(renderable)
    return buf.getvalue()


def test_step_and_summary_tables_print_markup_names_as_text() -> None:
    stats = PassStats(steps={MARKUP: 3}, parse_rate={MARKUP: 1.0}, pairs_per_step={MARKUP: 1})
    assert MARKUP in _render(step_table(stats))
    metric = {"value": 0.5, "ci95": [0.1, 0.9], "n": 4}
    summary = IterationSummary(iteration=0, model_version=0, new_version=1, kept_version=1, kept_checkpoint="c",
                               decision=MARKUP, checkpoint="c",
                               evals={"kept": {MARKUP: metric}, "candidate": {MARKUP: metric}})
    text = _render(summary_table([summary]))
    assert text.count(MARKUP) == 2  # the decision, and the metric row


def test_eval_tables_print_markup_names_as_text(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from rsi.evals.cli import print_table
    from rsi.evals.task import TaskResult

    print_table({MARKUP: TaskResult(task=MARKUP, metric=MARKUP, value=0.5, ci95=(0.1, 0.9), n=2, items=[],
                                    extra={MARKUP: {"value": 0.5, "ci95": [0.1, 0.9], "n": 2}})})
    assert capsys.readouterr().out.count(MARKUP) == 3
    from rsi.evals.compare import _table

    _table(str(tmp_path / "[/a]"), str(tmp_path / "[b]"), {MARKUP: {"delta": 0.1, "ci95": [0.0, 0.2], "p": 0.5,
                                                                     "n": 3}})
    out = capsys.readouterr().out
    assert MARKUP in out and "[/a]" in out
