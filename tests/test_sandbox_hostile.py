"""The hostile matrix: programs that attack the host or try to fake a pass, through both launchers.

Each case's test code asserts that the *attack succeeded* (or that a wrong answer is right), so a verdict
of pass means isolation or judging broke. After every run the host must be intact: the canary file is
unchanged, nothing created where the program should not reach, no process of the slot uids alive, and no
connection reached the listeners (TCP on localhost, a Unix socket in a world-writable /tmp dir like Ray's).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import textwrap

import pytest

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.executor import Sandbox
from rsi.sandbox.slots import uid_processes
from rsi.sandbox.verdict import PASS

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="the sandbox needs root (per-slot uids) and bubblewrap",
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


@pytest.fixture(scope="module", params=["bwrap", "landlock"])
def sandbox(request):
    base = {"bwrap": 62000, "landlock": 62100}[request.param]
    cfg = SandboxConfig(launcher=request.param, slots=1, uid_base=base, uid_count=16, limits=LIMITS)
    with Sandbox(cfg, canary=False) as sb:
        uids = [s.uid for s in sb.slots.slots]
        yield sb
    for uid in uids:  # closed: not even the server is left
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
    for slot in sandbox.slots.slots:
        left = set(uid_processes(slot.uid)) - sandbox.server_pids()
        assert not left, f"processes of uid {slot.uid} left behind: {sorted(left)}"


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
        harness=sandbox.launcher.harness,
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
