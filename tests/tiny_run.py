"""The one-minute `rsi run +preset=smoke` on 2 cores, shared by the tests that run the command the way a user
does (ray job submit, an installed wheel, a sweep): the cheapest family, one DPO step, one held-out task of two
items. Only sizes change; every stage of an iteration still runs."""

from __future__ import annotations

from pathlib import Path

TABLES = ("performances", "judgments", "preferences")


def tiny_run(tiny_model: Path) -> list[str]:
    """conf/preset/smoke.yaml on the session's tiny model (built once per test run)."""
    return ["+preset=smoke", f"model.path={tiny_model}"]


def assert_iteration_written(run_dir: Path) -> None:
    """The three tables of iteration 0 hold rows and checkpoint v1 is an HF folder."""
    from rsi.corpus.stream import read_table

    for table in TABLES:
        assert read_table(run_dir / "corpus" / "iter_000", table).num_rows > 0, table
    assert (run_dir / "checkpoints" / "v1" / "config.json").is_file()
