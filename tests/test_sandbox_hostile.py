"""The hostile matrix: programs that attack the host or try to fake a pass, through both launchers.

Each case's test code asserts that the *attack succeeded* (or that a wrong answer is right), so a verdict
of pass means isolation or judging broke. After every run the host must be intact: the canary file is
unchanged, nothing created where the program should not reach, no process of the slot uids alive, and no
connection reached the listeners (TCP on localhost, a Unix socket in a world-writable /tmp dir like Ray's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import Sandbox, humaneval_job, json_job
from rsi.sandbox.runner import process_state
from rsi.sandbox.slots import uid_processes
from rsi.sandbox.verdict import PASS, Verdict

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap") or not shutil.which("setpriv"),
    reason="the matrix runs as root and as a non-root user (setpriv), with bubblewrap",
)]

SECRET = "rsi-secret-7f3a9c"
LIMITS = Limits(timeout_s=1.5, memory_mb=512, output_bytes=256 << 10, tmpfs_mb=32, file_mb=8)


class Host:
    """What a hostile program might reach on the host, laid out where a broken sandbox would expose it."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="rsi-hostile-", dir="/tmp")
        os.chmod(self.dir, 0o777)  # world-writable on purpose: only the sandbox may stop the program
        self.canary = os.path.join(self.dir, "canary.txt")
        with open(self.canary, "w") as f:
            f.write("do not touch\n")
        os.chmod(self.canary, 0o666)
        self.digest = self._digest()
        self.pwned = os.path.join(self.dir, "pwned")
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp.setblocking(False)
        self.port = self.tcp.getsockname()[1]
        self.unix_path = os.path.join(self.dir, "raylet")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(16)
        self.unix.setblocking(False)
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract_name = f"\0rsi-hostile-{os.getpid()}"
        self.abstract.bind(self.abstract_name)
        self.abstract.listen(16)
        self.abstract.setblocking(False)
        os.environ["RSI_TEST_SECRET"] = SECRET

    def _digest(self) -> str:
        with open(self.canary, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def connections(self) -> int:
        n = 0
        for s in (self.tcp, self.unix, self.abstract):
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
        return n

    def assert_intact(self) -> None:
        assert os.path.exists(self.canary), "canary file removed"
        assert self._digest() == self.digest, "canary file changed"
        assert not os.path.exists(self.pwned), "program created a file on the host"
        assert self.connections() == 0, "a listener saw a connection"

    def close(self) -> None:
        for s in (self.tcp, self.unix, self.abstract):
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.environ.pop("RSI_TEST_SECRET", None)


@pytest.fixture(scope="module")
def host():
    h = Host()
    yield h
    h.close()


TEST_UID = 65010  # the non-root user the matrix also runs as (no passwd entry needed)
SERVE = os.path.join(os.path.dirname(__file__), "data", "sandbox", "serve_as_user.py")


class UserSandbox:
    """The same Sandbox API, served by a process running as the non-root TEST_UID (setpriv), so the
    matrix checks the unprivileged launchers exactly as a laptop or a runAsNonRoot pod runs them."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        cfg_json = json.dumps({**dataclasses.asdict(cfg), "launcher": str(cfg.launcher)})
        self.proc = subprocess.Popen(
            ["setpriv", f"--reuid={TEST_UID}", f"--regid={TEST_UID}", "--clear-groups",
             sys.executable, SERVE, cfg_json],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root},
        )
        hello = self._read()
        if "unavailable" in hello:
            self.close()
            pytest.fail(f"no unprivileged sandbox: {hello['unavailable']}")
        info = self._ask({"op": "info"})
        self.harness, self.pid = info["harness"], info["pid"]
        self.uids = [TEST_UID]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "the non-root sandbox process died"
        return json.loads(line)

    def _ask(self, req: dict) -> object:
        self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def run(self, program: str, tests: object, *, fmt: str = "humaneval", entry_point: str = "",
            limits: Limits | None = None) -> Verdict:
        if fmt == "humaneval":
            job = humaneval_job(program, tests, entry_point)  # type: ignore[arg-type]
        else:
            job = json_job(program, tests, entry_point)  # type: ignore[arg-type]
        return self.run_job(job, limits)

    def run_job(self, job: dict, limits: Limits | None = None) -> Verdict:
        lim = dataclasses.asdict(limits) if limits else None
        return Verdict.from_dict(self._ask({"op": "run", "job": job, "limits": lim}))  # type: ignore[arg-type]

    def run_many(self, jobs: list[dict], limits: Limits | None = None) -> list[Verdict]:
        lim = dataclasses.asdict(limits) if limits else None
        out = self._ask({"op": "run_many", "jobs": jobs, "limits": lim})
        return [Verdict.from_dict(d) for d in out]  # type: ignore[union-attr]

    def server_pids(self) -> set[int]:
        return {self.pid, *self._ask({"op": "info"})["server_pids"]}  # type: ignore[index]

    def server_states(self) -> list:
        return self._ask({"op": "info"})["state"]  # type: ignore[index]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


class RootSandbox(Sandbox):
    @property
    def uids(self) -> list[int]:
        return [s.uid for s in self.slots.slots]

    @property
    def harness(self) -> str:
        return self.launcher.harness

    def server_states(self) -> list:
        return [r.server_state() for r in self.runners.values()]


MODES = [("bwrap", "root"), ("landlock", "root"), ("bwrap", "user"), ("landlock", "user")]


@pytest.fixture(scope="module", params=MODES, ids=["-".join(m) for m in MODES])
def sandbox(request):
    launcher, user = request.param
    base = {"bwrap": 62000, "landlock": 62100}[launcher]
    cfg = SandboxConfig(launcher=launcher, slots=1, uid_base=base, uid_count=16, limits=LIMITS)
    if user == "user":
        sb = UserSandbox(cfg)
        yield sb
        sb.close()
        uids = [TEST_UID]
    else:
        with RootSandbox(cfg, canary=False) as rsb:
            uids = rsb.uids
            yield rsb
    # Closed: not even the server is left. Orphans killed with a namespace are reaped by the host's init
    # in its own time, so give it a moment before counting zombies too.
    deadline = time.monotonic() + 10.0
    while any(uid_processes(uid) for uid in uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for uid in uids:
        assert uid_processes(uid) == []


def _check(body: str) -> str:
    return "def check(candidate):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


# Each case: (program, test code). Programs define f; tests assert the attack worked (or a wrong answer).
# {dir} {canary} {pwned} {port} {unix} {abstract} {secret} {harness} are filled in per run.
WRONG = _check("assert candidate(1) == 2")
SUCCEEDED = _check("assert candidate() is True")

CASES: dict[str, tuple[str, str]] = {
    # --- time
    "infinite_loop": ("def f(x):\n    while True:\n        pass\n", WRONG),
    "sigterm_ignored": (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "def f(x):\n    while True:\n        pass\n",
        WRONG,
    ),
    "timer_disarmed": (
        "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "def f(x):\n    while True:\n        pass\n",
        WRONG,
    ),
    "catastrophic_regex": (
        "import re\ndef f(x):\n    re.match(r'(a+)+$', 'a' * 64 + 'b')\n    return 3\n",
        WRONG,
    ),
    "non_daemon_thread": (
        "import threading\ndef spin():\n    while True:\n        pass\n"
        "def f(x):\n    threading.Thread(target=spin).start()\n    return 3\n",
        WRONG,
    ),
    "module_level_loop": ("while True:\n    pass\ndef f(x):\n    return 2\n", WRONG),
    # --- memory and disk
    "alloc_50gb": ("def f(x):\n    b = bytearray(50 * 2**30)\n    return 2\n", WRONG),
    "slow_leak": (
        "def f(x):\n    keep = []\n    while True:\n        keep.append(bytearray(8 << 20))\n",
        WRONG,
    ),
    "file_100mb": (
        "def f():\n    with open('big', 'wb') as fh:\n        for _ in range(100):\n"
        "            fh.write(b'x' * (1 << 20))\n    import os\n"
        "    return os.path.getsize('big') >= 100 << 20\n",
        SUCCEEDED,
    ),
    "many_files": (
        "import os\ndef f():\n    os.mkdir('m')\n    for i in range(1_000_000):\n"
        "        open(f'm/{{i}}', 'w').close()\n    return True\n",
        SUCCEEDED,
    ),
    # --- processes
    "fork_bomb_fork": (
        "import os\ndef f():\n    n = 0\n    for _ in range(5000):\n        try:\n"
        "            if os.fork() == 0:\n                import time; time.sleep(60); os._exit(0)\n"
        "            n += 1\n        except OSError:\n            pass\n    return n >= 5000\n",
        SUCCEEDED,
    ),
    "fork_bomb_multiprocessing": (
        "import multiprocessing, time\ndef f():\n    ps = []\n    for _ in range(500):\n"
        "        p = multiprocessing.Process(target=time.sleep, args=(60,))\n"
        "        p.start()\n        ps.append(p)\n    return len(ps) >= 500\n",
        SUCCEEDED,
    ),
    "fork_bomb_posix_spawn": (
        "import os, sys\ndef f():\n    n = 0\n    for _ in range(2000):\n        try:\n"
        "            os.posix_spawn('/bin/sleep', ['sleep', '60'], {{}})\n            n += 1\n"
        "        except OSError:\n            pass\n    return n >= 2000\n",
        SUCCEEDED,
    ),
    "fork_bomb_ctypes": (
        "import ctypes, time\nlibc = ctypes.CDLL(None)\ndef f():\n    n = 0\n"
        "    for _ in range(5000):\n        pid = libc.fork()\n        if pid == 0:\n"
        "            time.sleep(60); libc._exit(0)\n        if pid > 0:\n            n += 1\n"
        "    return n >= 5000\n",
        SUCCEEDED,
    ),
    "setsid_daemon_holds_pipe": (
        "import os, time\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        if os.fork() == 0:\n            while True:\n"
        "                print('daemon', flush=True); time.sleep(0.05)\n        os._exit(0)\n"
        "    return 3\n",
        WRONG,
    ),
    "kill_parent": (
        "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 3\n",
        WRONG,
    ),
    "stop_parent": (
        "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGSTOP)\n    return 3\n",
        WRONG,
    ),
    "kill_everything": (
        "import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n    return True\n",
        SUCCEEDED,
    ),
    # --- the host's files
    # (the canary must have been visible and be gone: under bwrap it is not even there to delete)
    "rm_rf_posix_spawn": (
        "import os\ndef f():\n    seen = os.path.exists('{canary}')\n"
        "    pid = os.posix_spawn('/bin/rm', ['rm', '-rf', '{dir}'], {{}})\n"
        "    os.waitpid(pid, 0)\n    return seen and not os.path.exists('{canary}')\n",
        SUCCEEDED,
    ),
    "rm_rf_ctypes": (
        "import ctypes, os\ndef f():\n    seen = os.path.exists('{canary}')\n"
        "    libc = ctypes.CDLL(None)\n    libc.unlink(b'{canary}')\n    libc.system(b'rm -rf {dir}')\n"
        "    return seen and not os.path.exists('{canary}')\n",
        SUCCEEDED,
    ),
    "rm_rf_reloaded_os": (
        "import importlib, os, shutil\ndef f():\n    o = importlib.reload(os)\n"
        "    seen = o.path.exists('{canary}')\n"
        "    o.system('rm -rf {dir}')\n    shutil.rmtree('{dir}', ignore_errors=True)\n"
        "    open('{pwned}', 'w').write('x')\n    return seen and not o.path.exists('{canary}')\n",
        SUCCEEDED,
    ),
    "overwrite_canary": (
        "def f():\n    with open('{canary}', 'w') as fh:\n        fh.write('pwned')\n    return True\n",
        SUCCEEDED,
    ),
    "overwrite_harness": (
        "import os\ndef f():\n    done = 0\n"
        "    for p in ['{harness}', '/rsi-harness.pyc', '{harness_src}']:\n        try:\n"
        "            with open(p, 'r+b') as fh:\n                fh.write(b'pwned')\n"
        "            done += 1\n        except OSError:\n            pass\n    return done > 0\n",
        SUCCEEDED,
    ),
    "read_shadow": ("def f():\n    return 'root:' in open('/etc/shadow').read()\n", SUCCEEDED),
    "read_parent_environ": (
        "import os\ndef f():\n    found = False\n"
        "    for pid in ['1', str(os.getppid()), *os.listdir('/proc')]:\n        try:\n"
        "            found |= '{secret}' in open(f'/proc/{{pid}}/environ').read()\n"
        "        except OSError:\n            pass\n    return found\n",
        SUCCEEDED,
    ),
    "env_secret": ("import os\ndef f():\n    return '{secret}' in str(os.environ)\n", SUCCEEDED),
    # --- network
    "tcp_localhost": (
        "import socket\ndef f():\n    s = socket.create_connection(('127.0.0.1', {port}), 1)\n"
        "    return True\n",
        SUCCEEDED,
    ),
    "tcp_metadata": (
        "import socket\ndef f():\n    s = socket.create_connection(('169.254.169.254', 80), 1)\n"
        "    return True\n",
        SUCCEEDED,
    ),
    "dns": ("import socket\ndef f():\n    return bool(socket.getaddrinfo('pypi.org', 443))\n", SUCCEEDED),
    "unix_socket_ray": (
        "import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect('{unix}')\n    return True\n",
        SUCCEEDED,
    ),
    "abstract_unix_socket": (
        "import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect({abstract!r})\n    return True\n",
        SUCCEEDED,
    ),
    # --- kernel surface
    "nested_userns": (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n    return libc.unshare(0x10000000) == 0\n",
        SUCCEEDED,
    ),
    "mount": (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n"
        "    return libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0\n",
        SUCCEEDED,
    ),
    "ptrace_parent": (
        "import ctypes, os\ndef f():\n    libc = ctypes.CDLL(None)\n"
        "    return libc.ptrace(16, os.getppid(), None, None) == 0\n",
        SUCCEEDED,
    ),
    "bpf": (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n    buf = ctypes.create_string_buffer(128)\n"
        "    return libc.syscall(321, 0, buf, 128) >= 0\n",
        SUCCEEDED,
    ),
    "io_uring": (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n    p = ctypes.create_string_buffer(120)\n"
        "    return libc.syscall(425, 8, p) >= 0\n",
        SUCCEEDED,
    ),
    "capabilities": (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None)\n"
        "    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\n    data = (ctypes.c_uint32 * 6)()\n"
        "    return libc.capget(hdr, data) == 0 and any(data)\n",
        SUCCEEDED,
    ),
    # --- output and crashes
    "stdout_100mb": (
        "import sys\ndef f(x):\n    chunk = 'x' * (1 << 20)\n    for _ in range(100):\n"
        "        sys.stdout.write(chunk)\n    return 2\n",
        WRONG,
    ),
    "invalid_utf8_output": (
        "import os\ndef f(x):\n    os.write(1, b'\\x00\\xff\\xfe\\xc3(' * 100)\n"
        "    os.write(2, b'\\xed\\xa0\\x80\\x00' * 100)\n    return 3\n",
        WRONG,
    ),
    "segfault": ("import ctypes\ndef f(x):\n    ctypes.string_at(0)\n    return 2\n", WRONG),
    "recursion_bomb": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef r(n):\n    return r(n + 1) + 1\n"
        "def f(x):\n    return r(0)\n",
        WRONG,
    ),
    # --- faking a pass through the test's namespace
    "shadow_builtin_abs": ("def abs(x):\n    return 0\ndef f(x):\n    return 3\n",
                           _check("assert abs(candidate(1) - 2) < 1e-9")),
    "shadow_builtin_all": ("def all(xs):\n    return True\ndef f(x):\n    return 3\n",
                           _check("assert all(candidate(x) == x + 1 for x in [1, 2])")),
    "shadow_builtin_isinstance": (
        "def isinstance(a, b):\n    return True\ndef f(x):\n    return 'two'\n",
        _check("r = candidate(1)\nassert isinstance(r, int) and r + 0 == r"),
    ),
    "stop_iteration_in_map": ("def f(x):\n    raise StopIteration\n",
                              _check("assert all(map(lambda x: candidate(x) == x + 1, [1, 2]))")),
    "stop_iteration_in_filter": ("def f(x):\n    raise StopIteration('done')\n",
                                 _check("assert not list(filter(lambda x: candidate(x) != x + 1, [1, 2]))")),
    "stop_async_iteration": ("def f(x):\n    raise StopAsyncIteration\n",
                             _check("assert all(map(lambda x: candidate(x) == x + 1, [1, 2]))")),
    # --- faking a pass (f must return x + 1; these return something else and cheat)
    "print_passed_exit0": (
        "import os\nprint('PASSED')\nprint('{{\"t\": \"done\"}}')\nos._exit(0)\ndef f(x):\n    return 3\n",
        WRONG,
    ),
    "sys_exit_in_test": ("import sys\ndef f(x):\n    sys.exit(0)\n", WRONG),
    "forge_result_fds": (
        'import os\nREC = b\'{{"t":"hello"}}\\n{{"t":"test","i":0,"name":"check",\''
        'b\'"status":"pass","message":""}}\\n{{"t":"done"}}\\n\'\n'
        "def f(x):\n    for fd in range(3, 256):\n        try:\n            os.write(fd, REC)\n"
        "        except OSError:\n            pass\n    os._exit(0)\n",
        WRONG,
    ),
    "patch_harness_module": (
        "import sys, gc\ndef f(x):\n    main = sys.modules['__main__']\n"
        "    for name in dir(main):\n        obj = getattr(main, name)\n"
        "        if callable(obj) and name not in ('f',):\n            try:\n"
        "                setattr(main, name, lambda *a, **k: True)\n            except Exception:\n"
        "                pass\n    import builtins\n    builtins.AssertionError = KeyError\n"
        "    return 3\n",
        WRONG,
    ),
    "walk_frames_and_gc": (
        "import sys, gc\ndef f(x):\n    fr = sys._getframe()\n    while fr:\n"
        "        fr.f_globals.update(check=lambda c: None)\n        fr = fr.f_back\n"
        "    for o in gc.get_objects():\n        if isinstance(o, dict) and 'check' in o:\n"
        "            o['check'] = lambda c: None\n    return 3\n",
        WRONG,
    ),
    "pythonoptimize_reexec": (
        "import os, sys\nos.environ['PYTHONOPTIMIZE'] = '2'\n"
        "os.execv(sys.executable, [sys.executable, '-OO', '-c', 'print(1)'])\n"
        "def f(x):\n    return 3\n",
        WRONG,
    ),
    "pickle_payload": (
        "import os\nclass Evil:\n    def __reduce__(self):\n"
        "        return (os.system, ('touch {pwned}',))\n"
        "def f(x):\n    return Evil()\n",
        WRONG,
    ),
    "pickle_bytes": (
        "import os, pickle\nclass Evil:\n    def __reduce__(self):\n"
        "        return (os.system, ('touch {pwned}',))\ndef f(x):\n    return pickle.dumps(Evil())\n",
        WRONG,
    ),
    "always_equal": (
        "class Eq:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
        "def f(x):\n    return Eq()\n",
        WRONG,
    ),
    "int_subclass_equal": (
        "class I(int):\n    def __eq__(self, other):\n        return True\n"
        "    def __int__(self):\n        return 2\n    __hash__ = int.__hash__\n"
        "def f(x):\n    return I(7)\n",
        WRONG,
    ),
    "fake_reply_on_rpc_pipe": (
        "import os, sys\ndef f(x):\n    main = sys.modules['__main__']\n"
        "    for fd in range(3, 64):\n        try:\n"
        "            main.send_msg(fd, {{'ok': True, 'value': 2}})\n        except Exception:\n"
        "            pass\n    os._exit(0)\n",
        _check("assert candidate(1) == 2\nassert candidate(5) == 6"),
    ),
}


def assert_no_leftovers(sandbox: Sandbox) -> None:
    """Only the warm sandbox's own launcher and server may remain under the slot uids between jobs."""
    for uid in sandbox.uids:
        # Without root the slots share one uid with nothing to sweep it: a zombie whose parent died waits
        # for the host's init; it runs nothing, so only live processes count here.
        live_only = isinstance(sandbox, UserSandbox)
        left = set(uid_processes(uid, zombies=not live_only)) - sandbox.server_pids()
        assert not left, f"processes of uid {uid} left behind: {sorted(left)}"


def _fill(text: str, host: Host, sandbox: Sandbox) -> str:
    from rsi.sandbox import harness

    return text.format(
        dir=host.dir,
        canary=host.canary,
        pwned=host.pwned,
        port=host.port,
        unix=host.unix_path,
        abstract=host.abstract_name,
        secret=SECRET,
        harness=sandbox.harness,
        harness_src=harness.__file__,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile(case: str, sandbox: Sandbox, host: Host) -> None:
    program, tests = CASES[case]
    v = sandbox.run(_fill(program, host, sandbox), tests, entry_point="f", limits=LIMITS)
    assert v.status != PASS, f"{case} passed under {sandbox.cfg.launcher}: {v}"
    assert v.status != "infra", v
    host.assert_intact()
    assert_no_leftovers(sandbox)
    json_safe = v.to_dict()  # the verdict itself must always serialise, whatever the program printed
    import json

    json.dumps(json_safe)


EXPECTED_STATUS = {
    "infinite_loop": {"timeout"},
    "sigterm_ignored": {"timeout"},
    "timer_disarmed": {"timeout"},
    "catastrophic_regex": {"timeout"},
    "module_level_loop": {"timeout"},
    "alloc_50gb": {"memory"},
    "slow_leak": {"memory", "timeout"},
    "stdout_100mb": {"output_limit"},
    "segfault": {"signal"},
    "always_equal": {"error"},
    "int_subclass_equal": {"fail"},
    "sys_exit_in_test": {"error"},
}


@pytest.mark.parametrize("case", sorted(EXPECTED_STATUS))
def test_hostile_status(case: str, sandbox: Sandbox, host: Host) -> None:
    """The status names what happened, so the corpus can tell a hang from a crash from a wrong answer."""
    program, tests = CASES[case]
    v = sandbox.run(_fill(program, host, sandbox), tests, entry_point="f", limits=LIMITS)
    assert v.status in EXPECTED_STATUS[case], v


def test_nothing_crosses_jobs(sandbox: Sandbox, host: Host) -> None:
    """A job's files, shared memory and processes are gone before the next job of the same warm sandbox."""
    plant = (
        "import os, time\ndef f(x):\n    for p in ('/tmp/leak', 'leak', '/dev/shm/leak'):\n        try:\n"
        "            open(p, 'w').write('x')\n        except OSError:\n            pass\n"
        "    if os.fork() == 0:\n        os.setsid()\n        time.sleep(30)\n        os._exit(0)\n"
        "    return 3\n"
    )
    sandbox.run(plant, WRONG, entry_point="f", limits=LIMITS)
    look = (
        "import os\ndef f():\n"
        "    return any(os.path.exists(p) for p in ('/tmp/leak', 'leak', '/dev/shm/leak'))\n"
    )
    v = sandbox.run(look, SUCCEEDED, entry_point="f", limits=LIMITS)
    assert v.status == "fail", v
    assert_no_leftovers(sandbox)


# ---------------------------------------------------------------------------------- state across jobs
_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
_PLACES = "PLACES = ('/leak', '/dev/leak', '/dev/shm/leak', '/tmp/leak', 'leak', '/usr/leak')\n"
KEY = 0x52534931  # SysV key both jobs agree on

# name -> (plant, look): plant leaves something behind; look returns True when it finds it.
CROSS_JOB: dict[str, tuple[str, str]] = {
    "files_anywhere_writable": (
        _PLACES + "def f():\n    for p in PLACES:\n        try:\n            open(p, 'w').write('x')\n"
        "        except OSError:\n            pass\n    return True\n",
        "import os\n" + _PLACES + "def f():\n    return any(os.path.exists(p) for p in PLACES)\n",
    ),
    "unwritable_dir": (
        "import os\ndef f():\n    os.makedirs('keep/inner')\n    open('keep/inner/x', 'w').close()\n"
        "    os.chmod('keep/inner', 0)\n    os.chmod('keep', 0o500)\n    return True\n",
        "import os\ndef f():\n    return bool(os.listdir('.'))\n",
    ),
    "deep_directory": (
        "import os\ndef f():\n    for _ in range(3000):\n        os.mkdir('d')\n        os.chdir('d')\n"
        "    open('x', 'w').close()\n    return True\n",
        "import os\ndef f():\n    return bool(os.listdir('.'))\n",
    ),
    "sysv_shm": (
        _LIBC + f"def f():\n    i = libc.shmget({KEY}, 4096, 0o1600)\n    libc.shmat.restype = ctypes.c_void_p\n"
        "    a = libc.shmat(i, None, 0)\n    ctypes.memmove(a, b'leak', 4)\n    return i >= 0\n",
        _LIBC + f"def f():\n    return libc.shmget({KEY}, 0, 0o600) >= 0\n",
    ),
    "sysv_msg": (
        _LIBC + f"def f():\n    return libc.msgget({KEY + 1}, 0o1600) >= 0\n",
        _LIBC + f"def f():\n    return libc.msgget({KEY + 1}, 0o600) >= 0\n",
    ),
    "sysv_sem": (
        _LIBC + f"def f():\n    return libc.semget({KEY + 2}, 1, 0o1600) >= 0\n",
        _LIBC + f"def f():\n    return libc.semget({KEY + 2}, 0, 0o600) >= 0\n",
    ),
    "posix_mq": (
        _LIBC + "def f():\n    return libc.mq_open(b'/rsi-leak', os.O_CREAT | os.O_RDWR, 0o600, None) >= 0\n",
        _LIBC + "def f():\n    return libc.mq_open(b'/rsi-leak', os.O_RDONLY) >= 0\n",
    ),
}


@pytest.mark.parametrize("case", sorted(CROSS_JOB))
def test_nothing_survives_a_job(case: str, sandbox: Sandbox, host: Host) -> None:
    """Every job starts from the state of a fresh sandbox: nothing one job writes, creates or leaves in
    IPC is visible to the next job of the same warm sandbox."""
    plant, look = CROSS_JOB[case]
    sandbox.run(plant, SUCCEEDED, entry_point="f", limits=LIMITS)
    v = sandbox.run(look, SUCCEEDED, entry_point="f", limits=LIMITS)
    assert v.status == "fail", v
    assert_no_leftovers(sandbox)


ORACLE = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "SPOTS = ('/tries', '/dev/tries', '/dev/shm/tries', '/tmp/tries', 'tries')\n"
    "def _tries():\n    n = 0\n    for p in SPOTS:\n        try:\n            n = max(n, int(open(p).read()))\n"
    "        except (OSError, ValueError):\n            pass\n"
    f"    i = libc.shmget({KEY + 3}, 4096, 0o1600)\n    if i >= 0:\n"
    "        libc.shmat.restype = ctypes.c_void_p\n        a = libc.shmat(i, None, 0)\n"
    "        n = max(n, ctypes.c_int.from_address(a).value)\n"
    "        ctypes.c_int.from_address(a).value = n + 1\n"
    "    for p in SPOTS:\n        try:\n            open(p, 'w').write(str(n + 1))\n        except OSError:\n"
    "            pass\n    return n\n"
    "GUESS = _tries()\ndef f(x):\n    return x + GUESS\n"
)


def test_repeated_wrong_samples_never_learn(sandbox: Sandbox) -> None:
    """Identical wrong samples of one problem, judged one after another in one warm sandbox, each start
    from scratch: a program that remembers its earlier tries anywhere never reaches the answer."""
    verdicts = [sandbox.run(ORACLE, WRONG, entry_point="f", limits=LIMITS) for _ in range(4)]
    assert [v.status for v in verdicts] == ["fail"] * 4, verdicts


def test_pid_counter_carries_nothing(sandbox: Sandbox) -> None:
    """Under bwrap every job's judge is pid 1 of a fresh pid namespace, so the pids a job sees do not
    tell how many processes earlier jobs made (a program could count its calls that way)."""
    if sandbox.cfg.launcher != "bwrap":
        pytest.skip("Landlock has no pid namespace: its pids are the host's, shared with every process")
    look = json_job("import os\ndef f():\n    return os.getpid()\n", [{"args": [], "expected": 0}], "f")
    burn = json_job(
        "import os\ndef f(n):\n    for _ in range(n):\n        if os.fork() == 0:\n            os._exit(0)\n"
        "        os.wait()\n    return 0\n",
        [{"args": [40], "expected": 0}],
        "f",
    )
    seen = []
    for _ in range(3):
        seen.append(sandbox.run_job(look, LIMITS).tests[0].output)
        sandbox.run_job(burn, LIMITS)
    assert len(set(seen)) == 1, seen


# ---------------------------------------------------------------------------------- the server's state
_PIDS = (
    "import os, resource\ndef pids():\n    me = os.getpid()\n"
    "    return {os.getppid(), 1, *range(max(2, me - 300), me)}\n"
)
POISON: dict[str, str] = {
    "rlimit_data": "resource.prlimit(pid, resource.RLIMIT_DATA, (1 << 20, 1 << 20))",
    "rlimit_as": "resource.prlimit(pid, resource.RLIMIT_AS, (16 << 20, 16 << 20))",
    "rlimit_nofile": "resource.prlimit(pid, resource.RLIMIT_NOFILE, (4, 4))",
    "rlimit_nproc": "resource.prlimit(pid, resource.RLIMIT_NPROC, (1, 1))",
    "rlimit_cpu": "resource.prlimit(pid, resource.RLIMIT_CPU, (1, 1))",
    "nice_pid": "os.setpriority(os.PRIO_PROCESS, pid, 19)",
    "nice_group_and_user": "os.setpriority(os.PRIO_PGRP, 0, 19); os.setpriority(os.PRIO_USER, 0, 19)",
    "affinity": "os.sched_setaffinity(pid, {0})",
    "scheduler": "os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))",
}


def server_state(sandbox: Sandbox) -> list:
    """What a job could change about the sandbox's long-lived processes, read from the host's /proc."""
    states = [process_state(pid) for pid in sorted(sandbox.server_pids())]
    return [state for state in states if state != ("gone",)]


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_job_cannot_poison_the_server(case: str, sandbox: Sandbox) -> None:
    """A job that tries to lower the server's limits, priority or CPU set changes nothing that outlives
    it: later correct programs still pass (never memory, never infra) and the host sees a clean server."""
    honest = "def f(x):\n    return x + 1\n"
    assert sandbox.run(honest, WRONG, entry_point="f", limits=LIMITS).status == "pass"
    before = server_state(sandbox)
    poison = (
        _PIDS + f"def f(x):\n    for pid in pids():\n        try:\n            {POISON[case]}\n"
        "        except (OSError, ValueError):\n            pass\n    return x\n"
    )
    assert sandbox.run(poison, WRONG, entry_point="f", limits=LIMITS).status == "fail"
    after = [sandbox.run(honest, WRONG, entry_point="f", limits=LIMITS) for _ in range(2)]
    assert [v.status for v in after] == ["pass", "pass"], after
    assert server_state(sandbox) == before, "the server's limits, priority or affinity changed"


# ---------------------------------------------------------------------------- outputs the host must take
def _returns(expr: str, expected: object, **case: object) -> dict:
    return json_job(f"import sys\ndef f():\n    return {expr}\n", [{"args": [], "expected": expected, **case}], "f")


HOST_OUTPUTS = {
    "huge_int": _returns("10**5000", 1),
    "huge_int_in_set": _returns("{10**5000, 1}", [1]),
    "huge_int_key": _returns("{10**5000: 1}", {"1": 1}),
    "huge_int_rel_tol": _returns("10**5000", 1.5, rel_tol=1e-9),
    "huge_int_vs_float_list": _returns("[10**400, -10**5000]", [1.0, 2.0], rel_tol=0.5),
    "nan_rel_tol": _returns("float('nan')", 1.0, rel_tol=1e-9),
    "lone_surrogate": _returns("'\\ud800x'", "x"),
    "surrogate_key": _returns("{'\\udfff': {1, 2}}", {}),
    "deep_nesting": _returns("__import__('functools').reduce(lambda a, _: [a], range(5000), [])", []),
    "mixed_set": _returns("{1, 'a', (2, 3), None, 1.5, frozenset({10**5000})}", []),
}


def test_host_survives_any_output(sandbox: Sandbox) -> None:
    """Whatever a program returns, its job gets a verdict (never pass here, never infra) that serialises,
    and the rest of the batch is judged as usual."""
    honest = json_job("def f():\n    return 1\n", [{"args": [], "expected": 1}], "f")
    names = sorted(HOST_OUTPUTS)
    verdicts = sandbox.run_many([HOST_OUTPUTS[n] for n in names] + [honest], LIMITS)
    for name, v in zip(names, verdicts):
        assert v.status in ("fail", "error"), (name, v)
        json.dumps(v.to_dict(), ensure_ascii=False).encode("utf-8")
    assert verdicts[-1].status == "pass", verdicts[-1]


def test_deep_directory_does_not_break_later_sandboxes(sandbox: Sandbox) -> None:
    """A tree deeper than any path the host can name is removed, and a new sandbox on the same slot
    starts (the old one used to leave it behind and fail every later start on that uid)."""
    deep = CROSS_JOB["deep_directory"][0]
    cfg = dataclasses.replace(sandbox.cfg, uid_base=sandbox.cfg.uid_base + 8, uid_count=1)
    for _ in range(2):
        sb = UserSandbox(cfg) if isinstance(sandbox, UserSandbox) else RootSandbox(cfg, canary=False)
        try:
            # error: Landlock without root gives the program no writable dir (nothing to cap it with); timeout:
            # a loaded machine stops the program mid-tree, which leaves the wipe the same deep tree to remove
            assert sb.run(deep, SUCCEEDED, entry_point="f", limits=LIMITS).status in ("pass", "error", "timeout")
            assert sb.run("def f(x):\n    return x + 1\n", WRONG, entry_point="f").status == "pass"
        finally:
            sb.close()


# -------------------------------------------------------------------------------------- resource caps
CAPS: dict[str, str] = {
    # Each returns True when it could hold more than the tmpfs/memory caps allow (LIMITS: 32 MiB tmpfs,
    # 8 MiB files, 512 MiB memory).
    "dev_tmpfs": "import os\ndef f():\n    n = 0\n    for i in range(8):\n        try:\n"
    "            with open(f'/dev/fill{{i}}', 'wb') as fh:\n                fh.write(b'x' * (7 << 20))\n"
    "            n += 7\n        except OSError:\n            pass\n    return n > 32\n",
    "root_tmpfs": "import os\ndef f():\n    n = 0\n    for i in range(8):\n        try:\n"
    "            with open(f'/fill{{i}}', 'wb') as fh:\n                fh.write(b'x' * (7 << 20))\n"
    "            n += 7\n        except OSError:\n            pass\n    return n > 32\n",
    "work_dir_disk": "import os\ndef f():\n    n = 0\n    for i in range(8):\n        try:\n"
    "            with open(f'fill{{i}}', 'wb') as fh:\n                fh.write(b'x' * (7 << 20))\n"
    "            n += 7\n        except OSError:\n            pass\n    return n > 32\n",
    "sysv_memory": _LIBC + "def f():\n    ids = [libc.shmget(0, 1 << 30, 0o1600) for _ in range(4)]\n"
    "    ok = [i for i in ids if i >= 0]\n    for i in ok:\n        libc.shmctl(i, 0, None)\n"
    "    return len(ok) == 4\n",
}


@pytest.mark.parametrize("case", sorted(CAPS))
def test_every_byte_counts_against_a_limit(case: str, sandbox: Sandbox, host: Host) -> None:
    v = sandbox.run(_fill(CAPS[case], host, sandbox), SUCCEEDED, entry_point="f", limits=LIMITS)
    assert v.status != PASS, f"{case} passed under {sandbox.cfg.launcher}: {v}"
    assert v.status != "infra", v


def test_forwarded_module_names_are_allowlisted(sandbox: Sandbox) -> None:
    """The judge imports a module the program names only from a short allowlist: a fake module object
    named after a stdlib `__main__` (which runs a tool on import) is not imported, and a correct program
    is judged as usual."""
    program = (
        "import types, math\nfor i, n in enumerate(['unittest.__main__', 'json.tool', 'pydoc', '__hello__',"
        " 'ensurepip.__main__', 'venv.__main__']):\n    globals()[f'm{i}'] = types.ModuleType(n)\n"
        "def f(x):\n    return x + 1\n"
    )
    tests = _check("assert candidate(1) == 2\nassert math.floor(2.5) == 2\nassert 'm0' not in globals()")
    v = sandbox.run(program, tests, entry_point="f", limits=LIMITS)
    assert v.status == PASS, v
    assert "Ran 0 tests" not in v.stderr and "Hello world" not in v.stdout


def test_slots_run_side_by_side(sandbox: Sandbox) -> None:
    """Several slots of one sandbox judge concurrently, as root (a uid each) and without root (one uid)."""
    cfg = dataclasses.replace(sandbox.cfg, slots=2, uid_base=sandbox.cfg.uid_base + 12, uid_count=2)
    sb = UserSandbox(cfg) if isinstance(sandbox, UserSandbox) else RootSandbox(cfg, canary=False)
    try:
        ok = humaneval_job("def f(x):\n    return x + 1\n", WRONG, "f")
        bad = humaneval_job("def f(x):\n    return x\n", WRONG, "f")
        verdicts = sb.run_many([ok, bad] * 5, LIMITS)
        assert [v.status for v in verdicts] == ["pass", "fail"] * 5, verdicts
    finally:
        sb.close()


def test_trusted_helpers_answer_for_the_program(sandbox: Sandbox) -> None:
    """A program that redefines a helper the test code calls (HumanEval's `poly`, `encode_cyclic`) passes
    no more when the job names the prompt as trusted helpers; an honest program still passes."""
    prompt = "import math\ndef double(x):\n    return 2 * x\ndef f(x):\n    '''x + 1'''\n"
    tests = _check("assert double(candidate(1)) == double(2)\nassert math.floor(2.5) == 2")
    cheat = prompt + "    return 3\ndef double(x):\n    return 0\n"
    honest = prompt + "    return x + 1\n"
    assert sandbox.run_job(humaneval_job(cheat, tests, "f"), LIMITS).status == PASS  # without helpers
    assert sandbox.run_job(humaneval_job(cheat, tests, "f", helpers=prompt), LIMITS).status == "fail"
    assert sandbox.run_job(humaneval_job(honest, tests, "f", helpers=prompt), LIMITS).status == PASS
