"""The overrides of a one-minute `rsi run model=tiny` on 2 cores, shared by the tests that run the command the
way a user does (ray job submit, an installed wheel, a sweep): the cheapest family, one DPO step, one held-out
task of two items. Only sizes change; every stage of an iteration still runs."""

from __future__ import annotations

from pathlib import Path

TABLES = ("performances", "judgments", "preferences")


def tiny_run(tiny_model: Path) -> list[str]:
    return ["model=tiny", f"model.path={tiny_model}", "loop.iterations=1",
            "backend.kv_cache_gb=0.25", "backend.num_cpus=0",
            "tasks=[open_ended]", "tasks.open_ended.seeds=[queues,dates]", "tasks.open_ended.candidates=3",
            "tasks.open_ended.max_tokens=32", "judging.max_tokens=40", "judging.rationale_chars=16",
            "train.max_steps=1", "evals.tasks=[format_following]", "evals.limit=2", "gate.enabled=false"]


def assert_iteration_written(run_dir: Path) -> None:
    """The three tables of iteration 0 hold rows and checkpoint v1 is an HF folder."""
    from rsi.corpus.stream import read_table

    for table in TABLES:
        assert read_table(run_dir / "corpus" / "iter_000", table).num_rows > 0, table
    assert (run_dir / "checkpoints" / "v1" / "config.json").is_file()
