"""Progress a user sees while `rsi run` works: chains of the corpus pass with their counts, and DPO's steps,
which Ray Train workers report to a named actor (the progress board) that the driver polls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.text import Text


class ChainProgress:
    """Corpus pass progress: chains done of total, generations, judge calls and pairs per step. On a terminal
    the status line updates on every chain; in a log, a line at each quarter and at the end."""

    def __init__(self, console: Console, status: Any = None) -> None:
        self.console, self.status = console, status
        self.total = self.done = 0
        self.generations: Counter = Counter()
        self.judge_calls: Counter = Counter()
        self.pairs: Counter = Counter()
        self._printed = 0

    def start(self, total: int) -> None:
        self.total = total
        self._show(force=True)

    def chain(self, tables: dict[str, Any]) -> None:
        """One finished chain's rows (pyarrow tables or lists of dicts per table name)."""
        self.done += 1
        for table, counter in (("performances", self.generations), ("judgments", self.judge_calls),
                               ("preferences", self.pairs)):
            counter.update(_steps(tables.get(table)))
        self._show()

    def line(self) -> str:
        def per_step(c: Counter) -> str:
            inner = ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
            return f"{sum(c.values())}" + (f" ({inner})" if inner else "")

        return (f"corpus pass · chains {self.done}/{self.total} · generations {per_step(self.generations)} · "
                f"judge calls {per_step(self.judge_calls)} · pairs {per_step(self.pairs)}")

    def _show(self, force: bool = False) -> None:
        if self.status is not None and self.console.is_terminal:
            self.status.update(Text(self.line()))
            return
        quarter = (4 * self.done) // max(self.total, 1)
        if force or quarter > self._printed or self.done == self.total:
            self._printed = quarter
            self.console.print(self.line(), markup=False, highlight=False)  # step names come from families


def _steps(table: Any) -> list[str]:
    if table is None:
        return []
    if hasattr(table, "column"):
        return [str(s) for s in table.column("step").to_pylist()] if "step" in table.column_names else \
            ["-"] * table.num_rows
    return [str(r.get("step", "-")) for r in table]


# ---- progress from Ray workers -------------------------------------------------------------------------------
BOARD = "rsi-progress"  # the named actor workers report to (the job's namespace)


class ProgressBoard:
    """Latest progress per kind ("dpo": step, of, loss), put by workers, read by the driver's console."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def put(self, kind: str, data: Any) -> None:
        self.items[kind] = data

    def get(self, kind: str) -> Any:
        return self.items.get(kind)


def start_board() -> Any:
    import ray

    return ray.remote(num_cpus=0)(ProgressBoard).options(name=BOARD, get_if_exists=True).remote()


def report(kind: str, data: Any) -> None:
    """From any worker of the run: best effort, nothing when no board runs (a library call outside `rsi run`)."""
    import ray

    if not ray.is_initialized():  # ray.get_actor would start a Ray of its own
        return
    try:
        board = ray.get_actor(BOARD)
    except ValueError:
        return
    board.put.remote(kind, data)


@contextmanager
def watch_dpo(console: Console, status: Any, board: Any, every: float = 1.0) -> Iterator[None]:
    """While the block runs, DPO's step k of n with its loss (reported by rsi.train.progress): on a terminal in
    the status line, in a log a line per quarter of the steps and the last."""
    import threading

    import ray

    ray.get(board.put.remote("dpo", None))
    stop = threading.Event()
    shown = {"data": None, "quarter": -1}

    def show(final: bool = False) -> None:
        data = ray.get(board.get.remote("dpo"))
        if not data or data == shown["data"]:
            return
        shown["data"] = data
        line = f"DPO step {data['step']}/{data['of']} · loss {data['loss']:.4f}"
        if status is not None and console.is_terminal:
            status.update(line)
            return
        quarter = (4 * data["step"]) // max(data["of"], 1)
        if final or quarter > shown["quarter"]:
            shown["quarter"] = quarter
            console.print(line)

    def poll() -> None:
        while not stop.wait(every):
            show()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show(final=True)
