"""The Ray actor pool of sandbox workers, on a local Ray."""

from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.skipif(
    not shutil.which("bwrap"),
    reason="the sandbox tests need bubblewrap",
)]


def test_pool_runs_jobs_in_order(ray_local) -> None:  # noqa: ANN001
    from rsi.sandbox.config import Limits, SandboxConfig
    from rsi.sandbox.executor import humaneval_job, json_job
    from rsi.sandbox.pool import SandboxPool

    cfg = SandboxConfig(slots=2, uid_base=64000, uid_count=16, limits=Limits(timeout_s=2.0))
    pool = SandboxPool(cfg, num_workers=2, num_cpus_per_worker=1, chunk=3)
    try:
        jobs = [
            humaneval_job(
                f"def f():\n    return {i}\n", f"def check(c):\n    assert c() == {i if i % 2 else -1}\n", "f"
            )
            for i in range(10)
        ]
        jobs.append(
            json_job("def g(x):\n    while True:\n        pass\n", [{"args": [1], "expected": 1}], "g")
        )
        verdicts = pool.run(jobs, Limits(timeout_s=1.0))
        assert [v.status for v in verdicts[:10]] == ["pass" if i % 2 else "fail" for i in range(10)]
        assert verdicts[10].status == "timeout"
    finally:
        pool.close()


def test_pool_refuses_a_broken_sandbox(ray_local) -> None:  # noqa: ANN001
    """The canary runs in each actor's constructor: a worker that cannot isolate never judges."""
    from rsi.sandbox.config import SandboxConfig
    from rsi.sandbox.pool import SandboxPool

    with pytest.raises(Exception, match="launch failed|did not start|isolation"):
        SandboxPool(
            SandboxConfig(bwrap="/nonexistent/bwrap", slots=1, uid_base=64100, uid_count=4, infra_retries=0)
        )
