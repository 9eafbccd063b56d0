"""A Ray actor pool of sandbox workers for the pipeline.

Each worker is a long-lived actor owning a `Sandbox` (its slot uids, its launcher) and runs the canary at
start: an actor whose isolation is broken fails to construct, and the pool refuses to run (fails closed).
A job already batches every test of one problem into one launch (HumanEval's `check`, or all JSON cases
of a problem, which share one program process; a case that kills or hangs it gets a fresh one). The
pool sends jobs in chunks so each actor call keeps all of its slots busy.
"""

from __future__ import annotations

from collections.abc import Sequence

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import Sandbox
from rsi.sandbox.verdict import Verdict


class SandboxWorker:
    """The actor body (also usable in-process). Holds its slots for its whole life."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.sandbox = Sandbox(cfg)

    def run(self, jobs: list[dict], limits: Limits | None = None) -> list[Verdict]:
        return self.sandbox.run_many(jobs, limits)

    def health(self) -> dict:
        return {"launcher": self.sandbox.cfg.launcher, "slots": [s.number for s in self.sandbox.slots.slots]}

    def close(self) -> None:
        self.sandbox.close()


class SandboxPool:
    """`num_workers` actors with `cfg.slots` concurrent runs each. Workers on one node take distinct uids
    from `[uid_base, uid_base + uid_count)` through file locks, whatever the placement."""

    def __init__(
        self,
        cfg: SandboxConfig | None = None,
        num_workers: int = 1,
        num_cpus_per_worker: float = 1.0,
        chunk: int | None = None,
        resources: dict[str, float] | None = None,
    ) -> None:
        import ray

        self.cfg = cfg or SandboxConfig()
        # `resources` (e.g. {"sandbox": 1}) places the workers on the nodes that offer it: a hardened pod group.
        actor_cls = ray.remote(SandboxWorker).options(num_cpus=num_cpus_per_worker, max_concurrency=2,
                                                      resources=resources or {})
        self.actors = [actor_cls.remote(self.cfg) for _ in range(num_workers)]
        # Constructing runs the canary; an IsolationBroken there surfaces here, before any job is judged.
        ray.get([a.health.remote() for a in self.actors])
        self.chunk = chunk or 4 * self.cfg.slots

    def run(self, jobs: Sequence[dict], limits: Limits | None = None) -> list[Verdict]:
        """Verdicts for `jobs` (see executor.humaneval_job / json_job), in input order."""
        import ray

        chunks = [list(jobs[i : i + self.chunk]) for i in range(0, len(jobs), self.chunk)]
        refs = [self.actors[i % len(self.actors)].run.remote(c, limits) for i, c in enumerate(chunks)]
        return [v for part in ray.get(refs) for v in part]

    def run_dicts(self, jobs: Sequence[dict], limits: Limits | None = None) -> list[dict]:
        """`run` with verdicts as plain dicts (Verdict.to_dict), for stages that store or ship them."""
        return [v.to_dict() for v in self.run(jobs, limits)]

    def close(self) -> None:
        import ray

        ray.get([a.close.remote() for a in self.actors])
        for a in self.actors:
            ray.kill(a)
        self.actors = []
