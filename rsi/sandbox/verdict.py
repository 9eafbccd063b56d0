"""Verdicts: what one sandbox run decided, built by the host from the harness's records only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, ERROR, TIMEOUT, MEMORY, OUTPUT_LIMIT, SIGNAL, INFRA = (
    "pass", "fail", "error", "timeout", "memory", "output_limit", "signal", "infra",
)
# Worst first: the overall status is the worst of the host's own findings and the per-test statuses.
SEVERITY = (INFRA, TIMEOUT, MEMORY, OUTPUT_LIMIT, SIGNAL, ERROR, FAIL, PASS)
STATUSES = frozenset(SEVERITY)


@dataclass
class TestResult:
    name: str
    status: str
    message: str = ""
    output: Any = None  # JSON cases: the program's output as plain JSON data, for the record

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown test status {self.status!r}")


@dataclass
class Verdict:
    status: str
    tests: list[TestResult] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    wall_ms: float = 0.0
    message: str = ""
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        tests = [TestResult(**t) for t in d.get("tests", [])]
        return cls(**{**d, "tests": tests})


def worst(statuses: list[str]) -> str:
    """The most severe status; PASS only when every entry is PASS (and there is at least one)."""
    if not statuses:
        return ERROR
    return min(statuses, key=SEVERITY.index)


def decode_output(data: bytes, keep: int) -> str:
    """Captured bytes -> text for the verdict: capped, undecodable bytes replaced (never raises)."""
    text = data[:keep].decode("utf-8", "replace")
    if len(data) > keep:
        text += f"\n[... {len(data) - keep} more bytes]"
    return text
