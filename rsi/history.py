"""The run's history: one record per finished iteration, and where a resumed run continues.

Iteration i serves the kept version, trains candidate version i+1 into `checkpoints/v{i+1}`, evaluates it and
keeps or rejects it. Its record (`iterations/iter_NNN.json`, written atomically once the decision is made)
holds the versions, the decision, every metric and the timings; `summary.json` is the list of all records. A
resumed run replays nothing that has a record: it continues at the first iteration without one, serving the
kept version of the last record, so every decision of the interrupted run stands and later rows carry the
versions an uninterrupted run would give them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rsi.run_dir import RunDir

NO_PAIRS = "no_pairs"  # the decision of an iteration whose corpus held no usable pair: nothing was trained


@dataclass
class IterationSummary:
    iteration: int
    model_version: int  # the version that served the corpus pass (the kept one)
    new_version: int  # the candidate DPO trained
    kept_version: int  # the version served after this iteration: the candidate, or the one it came from
    kept_checkpoint: str  # its weights (the base model's folder for v0)
    decision: str  # kept | rejected | ungated (no evaluation this iteration) | no_pairs (nothing to train on)
    checkpoint: str  # the candidate's folder; a rejected one stays on disk and is never trained from again
    trained_from: str = ""  # the weights DPO started from: the kept version's
    performances: int = 0
    judgments: int = 0
    preferences: int = 0
    parse_rate: float = 0.0
    parse_rate_per_step: dict[str, float] = field(default_factory=dict)
    pairs_per_step: dict[str, int] = field(default_factory=dict)
    position_bias: dict[str, dict[str, float]] = field(default_factory=dict)
    mean_length: dict[str, float] = field(default_factory=dict)
    overlap_dropped: int = 0  # preference rows left out for sharing text with an evaluation item
    dpo_loss: float | None = None
    dpo_curve: list[list[float]] = field(default_factory=list)  # [step, loss]
    label_noise_swapped: int = 0  # pairs DPO trained with chosen and rejected swapped (train.label_noise)
    # startup, eval_kept, corpus_pass, dpo, swap, eval, rollback
    seconds: dict[str, float] = field(default_factory=dict)
    gen_tokens_per_s: float = 0.0  # tokens the corpus pass generated per second of the pass
    engine_busy: float | None = None  # share of the pass with requests in flight, mean over replicas (vLLM)
    engine_pid: int | None = None  # the same process every iteration: weights change under a live engine
    # kept / candidate: {task: {metric, value, ci95, n}}; gate / claim / vs_v0: {task: {delta, ci95, p, n}}
    evals: dict[str, Any] = field(default_factory=dict)
    gate_reasons: list[str] = field(default_factory=list)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def load_history(run_dir: Path | str) -> list[IterationSummary]:
    """The records of the finished iterations, in order, up to the first gap."""
    from rsi.input_files import InputFileError, read_json

    run = RunDir(Path(run_dir))
    out = []
    while (path := run.record(len(out))).exists():
        try:
            out.append(IterationSummary(**read_json(path, dict)))
        except (InputFileError, TypeError) as e:  # cut short by a crash of an older rsi, or edited by hand
            raise InputFileError(f"{e if isinstance(e, InputFileError) else f'{path}: not an iteration record'}; "
                                 f"move it aside to redo iteration {len(out)}") from None
    return out


def record_iteration(run_dir: Path | str, history: list[IterationSummary], summary: IterationSummary) -> None:
    """Append `summary` to the history: its record first (the iteration is finished from then on), then
    summary.json, the whole list."""
    run = RunDir(Path(run_dir))
    history.append(summary)
    _write_json(run.record(summary.iteration), asdict(summary))
    _write_json(run.summary, [asdict(s) for s in history])
