"""Progress a user sees while a run works: chain counts per corpus pass, and DPO's steps reported by Ray Train's
workers to the progress board."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from rsi.progress import ChainProgress


@pytest.mark.unit
def test_chain_progress_counts_per_step() -> None:
    buf = io.StringIO()
    progress = ChainProgress(Console(file=buf, width=200, force_terminal=False))
    progress.start(4)
    for _ in range(4):
        progress.chain({"performances": [{"step": "respond"}] * 3,
                        "judgments": [{"step": "rank_responses"}] * 2 + [{"step": "rank_response_rankings"}],
                        "preferences": [{"step": "respond"}]})
    lines = buf.getvalue().splitlines()
    assert lines[-1] == ("corpus pass · chains 4/4 · generations 12 (respond 12) · judge calls 12 "
                         "(rank_response_rankings 4, rank_responses 8) · pairs 4 (respond 4)")
    assert len(lines) == 5  # the start, then a line per quarter in a log


@pytest.mark.ray
def test_dpo_steps_reach_the_console(ray_local) -> None:
    """Rank 0's TRL callback reports each logged step to the run's board actor; the driver's watcher prints
    "DPO step k/n · loss" in a log (a line per quarter, and the last)."""
    import time

    from transformers import TrainerState

    from rsi.progress import start_board, watch_dpo
    from rsi.train.progress import ProgressCallback

    board = start_board()
    buf = io.StringIO()
    state = TrainerState(global_step=0, max_steps=4)
    with watch_dpo(Console(file=buf, width=200, force_terminal=False), None, board, every=0.05):
        for step in range(1, 5):
            state.global_step = step
            ProgressCallback().on_log(None, state, None, logs={"loss": 0.7 - 0.1 * step})
            time.sleep(0.3)
    lines = buf.getvalue().splitlines()
    assert lines[-1] == "DPO step 4/4 · loss 0.3000"
    assert all(re.fullmatch(r"DPO step [1-4]/4 · loss 0\.\d{4}", line) for line in lines)
