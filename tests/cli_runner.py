"""`rsi` verbs run in the test's own process: what a user would see (exit status, stdout, stderr) without the
seconds a new interpreter spends importing Hydra, torch and the rest for every case."""

from __future__ import annotations

import pytest

from rsi.cli import main


def run_rsi(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str, str]:
    """(exit status, stdout, stderr) of `rsi ARGV`; argparse's and Hydra's exits count as statuses."""
    try:
        code: int | str | None = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
