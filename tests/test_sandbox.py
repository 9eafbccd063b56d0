"""Sandbox units (codec, seccomp, verdicts) and behaviour through the real launchers: both test formats,
what never enters the sandbox, infra retries, the canary failing closed, and the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from rsi.sandbox import codec
from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import IsolationBroken, Sandbox
from rsi.sandbox.seccomp import ARCHES, DENIED, build_filter
from rsi.sandbox.verdict import TestResult, Verdict, decode_output, worst

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
)
LIMITS = Limits(timeout_s=3.0, memory_mb=512)


# ------------------------------------------------------------------------------------------------ units
@pytest.mark.unit
@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        10**400,
        1.5,
        float("inf"),
        -float("inf"),
        "héllo\x00",
        [1, [2, (3, 4)]],
        (1, "a"),
        {"a": 1, 2: [3], (4, 5): None},
        {1, 2},
        frozenset({"x"}),
        b"\x00\xff",
        1 + 2j,
        [],
        (),
        {},
    ],
)
def test_codec_round_trip_keeps_types(value: object) -> None:
    back = codec.loads(codec.dumps(value))
    assert back == value and type(back) is type(value)


@pytest.mark.unit
def test_codec_nan_and_subclasses() -> None:
    assert math.isnan(codec.loads(codec.dumps(float("nan"))))

    class Sneaky(int):
        def __eq__(self, other: object) -> bool:
            return True

        def __int__(self) -> int:
            return 2

        __hash__ = int.__hash__

    back = codec.loads(codec.dumps(Sneaky(7)))
    assert type(back) is int and back == 7  # the base value, not the overrides


@pytest.mark.unit
@pytest.mark.parametrize(
    "bad",
    [
        '{"$x": 1}',
        '{"a": 1, "b": 2}',
        '{"$t": 5}',
        '{"$d": [[1]]}',
        '{"$d": [[[1], 2]]}',
        '{"$c": ["a", 1]}',
        "[" * 5000 + "]" * 5000,
        '{"$f": "1e9"}',
    ],
)
def test_codec_rejects_malformed(bad: str) -> None:
    with pytest.raises(codec.CodecError):
        codec.loads(bad)


@pytest.mark.unit
def test_codec_refuses_arbitrary_objects() -> None:
    with pytest.raises(codec.CodecError):
        codec.encode(object())


@pytest.mark.unit
def test_to_plain_for_json_cases() -> None:
    assert codec.to_plain((1, {2: {3}})) == [1, {"2": [3]}]


@pytest.mark.unit
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_seccomp_filter_shape(arch: str) -> None:
    prog = build_filter(ARCHES[arch])
    assert len(prog) % 8 == 0 and 8 * len(DENIED) < len(prog) < 8 * 255
    assert build_filter(ARCHES[arch], allow_unix_sockets=False) != prog


@pytest.mark.unit
def test_seccomp_numbers_match_kernel_headers() -> None:
    header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    if not os.path.exists(header):
        pytest.skip("kernel headers not installed")
    nums = {}
    with open(header) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                nums[parts[1][5:]] = int(parts[2])
    for name, nr in ARCHES["x86_64"].table.items():
        assert nums[name] == nr, name


@pytest.mark.unit
def test_verdict_helpers() -> None:
    assert worst(["pass", "fail", "timeout"]) == "timeout"
    assert worst(["pass"]) == "pass" and worst([]) == "error"
    assert decode_output(b"ok\xff\x00", 100) == "ok\ufffd\x00"
    assert decode_output(b"x" * 10, 4).startswith("xxxx\n[... 6 more bytes]")
    v = Verdict("fail", [TestResult("t", "fail", "m")], wall_ms=1.0)
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    with pytest.raises(ValueError):
        TestResult("t", "passed")


@pytest.mark.unit
def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SandboxConfig(launcher="docker")
    with pytest.raises(ValueError):
        SandboxConfig(uid_base=0)
    cfg = SandboxConfig(launcher="landlock", slots=3, limits=Limits(timeout_s=2.0))
    assert cfg.launcher == "landlock" and cfg.limits.timeout_s == 2.0 and cfg.slots == 3


# ------------------------------------------------------------------------------------------ behaviour
@pytest.fixture(scope="module", params=["bwrap", "landlock"])
def sandbox(request):
    base = {"bwrap": 63000, "landlock": 63100}[request.param]
    if os.geteuid() != 0 or not shutil.which("bwrap"):
        pytest.skip("the sandbox needs root (per-slot uids) and bubblewrap")
    with Sandbox(
        SandboxConfig(launcher=request.param, slots=2, uid_base=base, uid_count=16, limits=LIMITS)
    ) as sb:
        yield sb


ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.unit
def test_humaneval_format(sandbox: Sandbox) -> None:
    ok = sandbox.run(ADD, "def check(candidate):\n    assert candidate(1, 2) == 3\n", entry_point="add")
    assert ok.status == "pass" and ok.tests[0].status == "pass"
    bad = sandbox.run(
        ADD, "def check(candidate):\n    assert candidate(1, 2) == 4, 'nope'\n", entry_point="add"
    )
    assert bad.status == "fail" and bad.tests[0].message == "nope"
    raises = sandbox.run(
        "def add(a, b):\n    raise ValueError('boom')\n",
        "def check(candidate):\n    assert candidate(1, 2) == 3\n",
        entry_point="add",
    )
    assert raises.status == "error" and raises.tests[0].message == "boom"
    caught = sandbox.run(
        "def add(a, b):\n    raise ValueError('boom')\n",
        "def check(candidate):\n    try:\n        candidate(1, 2)\n    except ValueError:\n"
        "        return\n    assert False\n",
        entry_point="add",
    )
    assert caught.status == "pass"  # program exceptions keep their builtin type for the test code
    syntax = sandbox.run(
        "def add(a, b)\n    return a + b\n", "def check(candidate):\n    pass\n", entry_point="add"
    )
    assert syntax.status == "error"
    printed = sandbox.run(
        "print('hi')\n" + ADD, "def check(candidate):\n    assert candidate(1, 1) == 2\n", entry_point="add"
    )
    assert printed.status == "pass" and printed.stdout == "hi\n"


@pytest.mark.unit
def test_helpers_and_modules_of_the_program_reach_the_tests(sandbox: Sandbox) -> None:
    program = (
        "import math\nK = (1, 2)\ndef helper(x):\n    return x * 2\ndef f(x):\n    return helper(x) + 1\n"
    )
    tests = (
        "def check(candidate):\n    assert candidate(2) == helper(2) + 1 == 5\n    assert K == (1, 2)\n"
        "    assert math.floor(2.5) == 2\n"
    )
    assert sandbox.run(program, tests, entry_point="f").status == "pass"


@pytest.mark.unit
def test_json_format(sandbox: Sandbox) -> None:
    cases = [
        {"args": [1, 2], "expected": 3},
        {"args": [[1], [2]], "expected": [1, 2]},
        {"args": [0.1, 0.2], "expected": 0.3, "rel_tol": 1e-9},
        {"args": [1, 1], "expected": 3, "name": "wrong"},
        {"function": "flag", "args": [], "expected": 1},  # True is not 1
        {"function": "pair", "kwargs": {"x": 4}, "expected": [4, 4]},
    ]
    program = ADD + "def flag():\n    return True\ndef pair(x):\n    return (x, x)\n"
    v = sandbox.run(program, cases, fmt="json", entry_point="add")
    assert [t.status for t in v.tests] == ["pass", "pass", "pass", "fail", "fail", "pass"]
    assert v.status == "fail" and v.tests[3].name == "wrong" and v.tests[0].output == 3


@pytest.mark.unit
def test_json_case_crash_does_not_sink_the_others(sandbox: Sandbox) -> None:
    program = (
        "import ctypes\ndef f(x):\n    if x == 0:\n        ctypes.string_at(0)\n    if x == 1:\n"
        "        while True:\n            pass\n    return x\n"
    )
    cases = [{"args": [0], "expected": 0}, {"args": [1], "expected": 1}, {"args": [2], "expected": 2}]
    v = sandbox.run(program, cases, fmt="json", entry_point="f", limits=LIMITS.with_(timeout_s=1.0))
    assert [t.status for t in v.tests] == ["signal", "timeout", "pass"]


@pytest.mark.unit
def test_expected_values_and_test_code_never_enter_the_program(sandbox: Sandbox) -> None:
    """The program cannot find the answers by searching its own memory."""
    search = (
        "import gc, sys\ndef f(x):\n    marker = '-'.join(['zq', 'unique'])\n"
        "    for o in gc.get_objects() + list(sys.modules.values()):\n"
        "        if marker in repr(o):\n            return marker + '-777'\n    return 'nope'\n"
    )
    v = sandbox.run(search, [{"args": [1], "expected": "zq-unique-777"}], fmt="json", entry_point="f")
    assert v.status == "fail", v
    v = sandbox.run(
        search, "def check(candidate):\n    assert candidate(1) == 'zq-unique' + '-777'\n", entry_point="f"
    )
    assert v.status == "fail", v


@pytest.mark.unit
def test_run_many_keeps_order(sandbox: Sandbox) -> None:
    from rsi.sandbox.executor import humaneval_job

    jobs = [
        humaneval_job(
            f"def f():\n    return {i}\n", f"def check(c):\n    assert c() == {i if i % 3 else -1}\n", "f"
        )
        for i in range(12)
    ]
    assert [v.status for v in sandbox.run_many(jobs)] == ["fail" if i % 3 == 0 else "pass" for i in range(12)]


@pytest.mark.unit
@needs_sandbox
def test_failed_launch_is_infra_and_retried() -> None:
    cfg = SandboxConfig(bwrap="/nonexistent/bwrap", slots=1, uid_base=63200, uid_count=4, infra_retries=2)
    with Sandbox(cfg, canary=False) as sb:
        v = sb.run(ADD, "def check(c):\n    pass\n", entry_point="add")
    assert v.status == "infra" and v.attempts == 3


@pytest.mark.e2e
@needs_sandbox
def test_canary_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox whose confinement is silently missing refuses to start."""
    from rsi.sandbox.launchers import LandlockLauncher

    real = LandlockLauncher.spec

    def unconfined(self, slot, limits, cfg_json_fn, seccomp_fd):  # noqa: ANN001, ANN202
        def strip(extra: dict) -> str:
            return cfg_json_fn({k: v for k, v in extra.items() if k != "landlock"})

        return real(self, slot, limits, strip, seccomp_fd)

    monkeypatch.setattr(LandlockLauncher, "spec", unconfined)
    with pytest.raises(IsolationBroken, match="write outside|TCP"):
        Sandbox(SandboxConfig(launcher="landlock", slots=1, uid_base=63300, uid_count=4))


@pytest.mark.unit
@needs_sandbox
def test_cli_run(tmp_path, capsys) -> None:  # noqa: ANN001
    from rsi.sandbox.cli import main

    prog = tmp_path / "p.py"
    prog.write_text(ADD)
    tests = tmp_path / "t.py"
    tests.write_text("def check(candidate):\n    assert candidate(2, 2) == 4\n")
    cases = tmp_path / "t.json"
    cases.write_text(json.dumps([{"args": [1, 2], "expected": 3}, {"args": [2, 2], "expected": 5}]))
    base = ["run", "--program", str(prog), "--uid-base", "63400", "--json"]
    assert main(base + ["--tests", str(tests), "--entry-point", "add"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "pass" and out["tests"][0]["name"] == "check"
    assert (
        main(base + ["--tests", str(cases), "--format", "json", "--entry-point", "add", "--no-canary"]) == 1
    )
    out = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in out["tests"]] == ["pass", "fail"]
    assert main(["run", "--program", str(prog), "--tests", str(tests)]) == 2  # humaneval needs --entry-point
    assert (
        main(base[1:] + ["--tests", str(tests), "--entry-point", "add", "--no-canary"]) == 0
    )  # "run" implied
