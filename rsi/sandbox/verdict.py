"""Verdicts: what one sandbox run decided, built by the host from the judge's records only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rsi.sandbox import codec

PASS, FAIL, ERROR, TIMEOUT, MEMORY, OUTPUT_LIMIT, SIGNAL, INFRA = (
    "pass",
    "fail",
    "error",
    "timeout",
    "memory",
    "output_limit",
    "signal",
    "infra",
)
# Worst first: the overall status is the worst of the host's own findings and the per-test statuses.
SEVERITY = (INFRA, TIMEOUT, MEMORY, OUTPUT_LIMIT, SIGNAL, ERROR, FAIL, PASS)
STATUSES = frozenset(SEVERITY)


@dataclass
class TestResult:
    __test__ = False  # not a pytest class, despite the name

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


def _status(value: object) -> str:
    return value if isinstance(value, str) and value in STATUSES else ERROR


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


def _records(raw: bytes) -> list[dict]:
    out = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            break  # a torn last line: the harness died mid-write
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _same(a: object, b: object, rel_tol: float) -> bool:
    """Structural equality of plain JSON data: bool is not a number, 1 == 1.0, optional float tolerance."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        try:
            return rel_tol > 0 and abs(a - b) <= rel_tol * max(abs(a), abs(b))
        except OverflowError:  # an int beyond any float: never within a tolerance of a finite one
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel_tol) for k in a)
    return type(a) is type(b) and a == b


def _show(plain: object) -> str:
    try:
        return codec.canonical(plain)[:500]
    except (codec.CodecError, ValueError, RecursionError):
        return "<unprintable>"


def _judge_output(name: str, value: object, case: dict) -> TestResult:
    """One JSON case from the judge's encoded output. Whatever the program returned, this is a result
    (ERROR at worst), never an exception: one odd output must not cost the batch its verdicts."""
    try:
        got = codec.to_plain(codec.decode_untrusted(value))
        ok = _same(got, case["expected"], float(case.get("rel_tol", 0.0)))
        output = codec.storable(got)
    except (codec.CodecError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        return TestResult(name, ERROR, f"unreadable output: {exc}"[:500])
    msg = "" if ok else f"expected {_show(case['expected'])}, got {_show(got)}"
    return TestResult(name, PASS if ok else FAIL, msg, output=output)


def _text(value: object) -> str:
    """Program-made text as valid UTF-8 (no lone surrogates), so every verdict can be stored."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def build_verdict(raw: bytes, job: dict, host_status: str) -> Verdict:
    """Decide from the harness's records. A test passes only on its own record; anything missing fails."""
    recs = _records(raw)
    kinds = [r.get("t") for r in recs]
    if "hello" not in kinds:
        infra = next((r for r in recs if r.get("t") == "infra"), None)
        msg = infra.get("message", "") if infra else "harness did not start"
        if host_status == "output_limit":  # nothing untrusted ran before hello; but say what we saw
            msg += " (output limit)"
        return Verdict(INFRA, message=_text(msg))
    done = "done" in kinds
    by_index = {int(r["i"]): r for r in recs if r.get("t") == "test" and isinstance(r.get("i"), int)}
    load = next((r for r in recs if r.get("t") == "load"), None)
    missing_status = host_status or ERROR
    missing_msg = {TIMEOUT: "time limit exceeded", OUTPUT_LIMIT: "output limit exceeded"}.get(
        missing_status, "harness ended before reporting this test"
    )
    tests: list[TestResult] = []
    if job["format"] == "humaneval":
        r = by_index.get(0)
        tests.append(
            TestResult("check", _status(r.get("status")), _text(r.get("message", "")))
            if r
            else TestResult("check", missing_status, missing_msg)
        )
    else:
        for i, case in enumerate(job["cases"]):
            name = case.get("name") or f"case {i}"
            r = by_index.get(i)
            if r is None:
                tests.append(TestResult(name, missing_status, missing_msg))
            elif r.get("status") != "ok":
                tests.append(TestResult(name, _status(r.get("status")), _text(r.get("message", ""))))
            else:
                tests.append(_judge_output(name, r.get("value"), case))
    statuses = [t.status for t in tests]
    if not done:
        statuses.append(ERROR)
    # The host's own finding (deadline, output cap) is the cause of whatever the tests saw after it.
    status = host_status or worst(statuses)
    message = ""
    if status != PASS:
        if host_status:
            message = missing_msg
        elif load is not None and not load.get("ok"):
            message = f"program failed to load: {_text(load.get('message', ''))}"
        elif not done:
            message = "harness killed before finishing"
        else:
            message = next((t.message for t in tests if t.status == status), "")
    return Verdict(status, tests, message=message)
