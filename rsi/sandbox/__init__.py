"""Untrusted code execution: launchers (bwrap, Landlock), limits, seccomp, the in-sandbox harness,
verdicts, and a Ray worker pool. Entry points: `Sandbox` (library), `rsi.sandbox.cli.main` (CLI),
`rsi.sandbox.pool.SandboxPool` (pipeline)."""

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import IsolationBroken, Sandbox, humaneval_job, json_job
from rsi.sandbox.verdict import TestResult, Verdict

__all__ = [
    "IsolationBroken",
    "Limits",
    "Sandbox",
    "SandboxConfig",
    "TestResult",
    "Verdict",
    "humaneval_job",
    "json_job",
]
