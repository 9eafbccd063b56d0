"""Canary self-test: a few hostile programs every worker runs at start. If any gets through (or an honest
program stops passing), the worker refuses to judge: a broken sandbox must fail closed, not score."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import TYPE_CHECKING

from rsi.sandbox.config import Limits
from rsi.sandbox.verdict import INFRA, PASS

if TYPE_CHECKING:
    from rsi.sandbox.executor import Sandbox

_LIMITS = Limits(timeout_s=5.0, memory_mb=512, nproc=32, output_bytes=64 << 10)
_ENV_ALLOWED = {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}
_SUCCEEDED = "def check(candidate):\n    assert candidate() is True\n"


def _cases(probe_dir: str, port: int) -> list[tuple[str, str, str, bool]]:
    """(name, program, tests, must_pass)."""
    target = os.path.join(probe_dir, "escaped")
    return [
        (
            "honest program passes",
            "def f(x):\n    return x + 1\n",
            "def check(candidate):\n    assert candidate(1) == 2\n",
            True,
        ),
        (
            "wrong answer fails",
            "def f(x):\n    return x\n",
            "def check(candidate):\n    assert candidate(1) == 2\n",
            False,
        ),
        (
            "exit(0) before the asserts",
            "import os\nprint('PASSED')\nos._exit(0)\ndef f(x):\n    return x\n",
            "def check(candidate):\n    assert candidate(1) == 2\n",
            False,
        ),
        (
            "write outside the sandbox",
            f"def f():\n    open({target!r}, 'w').write('x')\n    return True\n",
            _SUCCEEDED,
            False,
        ),
        (
            "TCP to the host",
            f"import socket\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), 1)\n"
            "    return True\n",
            _SUCCEEDED,
            False,
        ),
        (
            "environment leak",
            f"import os\ndef f():\n    return not set(os.environ) <= {sorted(_ENV_ALLOWED)!r}\n",
            _SUCCEEDED,
            False,
        ),
        (
            "fork bomb",
            "import os, time\ndef f():\n    n = 0\n    for _ in range(200):\n        try:\n"
            "            if os.fork() == 0:\n                time.sleep(30)\n                os._exit(0)\n"
            "            n += 1\n        except OSError:\n            pass\n    return n >= 200\n",
            _SUCCEEDED,
            False,
        ),
        (
            "new namespaces",
            "import ctypes\ndef f():\n    return ctypes.CDLL(None).unshare(0x10000000) == 0\n",
            _SUCCEEDED,
            False,
        ),
    ]


def self_test(sandbox: Sandbox) -> list[str]:
    """Run the canaries; return what went wrong (empty: isolation holds)."""
    probe_dir = tempfile.mkdtemp(prefix="rsi-canary-")
    os.chmod(probe_dir, 0o777)  # reachable by the slot uid were the filesystem not isolated
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    problems = []
    try:
        for name, program, tests, must_pass in _cases(probe_dir, listener.getsockname()[1]):
            v = sandbox.run(program, tests, entry_point="f", limits=_LIMITS)
            if v.status == INFRA:
                problems.append(f"{name}: launch failed ({v.message}; {v.stderr.strip()[:300]})")
            elif (v.status == PASS) != must_pass:
                problems.append(f"{name}: got {v.status}")
        if os.listdir(probe_dir):
            problems.append("a program wrote outside the sandbox")
        try:
            listener.accept()[0].close()
            problems.append("a program connected to the host")
        except BlockingIOError:
            pass
    finally:
        listener.close()
        shutil.rmtree(probe_dir, ignore_errors=True)
    return problems
