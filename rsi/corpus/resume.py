"""Where a crashed run continues: the first unfinished iteration and the weights to reload.

Iteration i runs on policy version i and ends in checkpoint `checkpoints/v{i+1}`. It is finished when its
corpus manifest exists (every set committed, writer closed) and that checkpoint is a whole HF folder. Resume
restarts at the first unfinished iteration, on the checkpoint of the last finished one, under that version
number, so rows written after resume carry the same model versions (and ids) as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsi.corpus.stream import manifest_complete


@dataclass
class ResumePoint:
    start: int  # first iteration to run
    checkpoint: str | None  # weights to load before it (None: the base model)
    version: int  # policy version those weights are


def iteration_dir(run_dir: Path | str, iteration: int) -> Path:
    return Path(run_dir) / "corpus" / f"iter_{iteration:03d}"


def checkpoint_dir(run_dir: Path | str, version: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"v{version}"


def checkpoint_complete(path: Path) -> bool:
    """An HF folder with its config and at least one weights file (the trainer moves it in whole)."""
    return (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))


def resume_point(run_dir: Path | str, iterations: int) -> ResumePoint:
    point = ResumePoint(0, None, 0)
    for i in range(iterations):
        ckpt = checkpoint_dir(run_dir, i + 1)
        if not (manifest_complete(iteration_dir(run_dir, i)) and checkpoint_complete(ckpt)):
            break
        point = ResumePoint(i + 1, str(ckpt), i + 1)
    return point
