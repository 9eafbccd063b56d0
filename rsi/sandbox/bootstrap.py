"""The harness as the sandbox runs it: codec + confine + wipe + program + harness sources joined into one
script (the sandbox has no rsi package), compiled to bytecode once per interpreter."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
from functools import cache
from importlib import resources


@cache
def harness_source() -> str:
    """codec + confine + wipe + program + harness as one script: the sandbox has no rsi package."""
    pkg = resources.files("rsi.sandbox")
    return "\n\n".join(
        (pkg / name).read_text()
        for name in ("codec.py", "confine.py", "wipe.py", "program.py", "harness.py")
    )


_pyc_lock = threading.Lock()


def harness_pyc(python: str, lock_dir: str) -> str:
    """The harness compiled once by the sandbox's own interpreter (so the bytecode magic matches) into a
    root-owned, world-readable file: compiling ~500 lines on every launch would cost ~9 ms."""
    source = harness_source()
    digest = hashlib.sha256((python + "\0" + source).encode()).hexdigest()[:16]
    path = os.path.join(lock_dir, f"harness-{digest}.pyc")
    with _pyc_lock:
        if os.path.exists(path):
            return path
        fd, src = tempfile.mkstemp(suffix=".py", dir=lock_dir)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        tmp = src + "c"
        try:
            subprocess.run(
                [
                    python,
                    "-I",
                    "-S",
                    "-c",
                    "import py_compile, sys; py_compile.compile(sys.argv[1], "
                    "cfile=sys.argv[2], dfile='rsi-harness', doraise=True)",
                    src,
                    tmp,
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            for leftover in (src, tmp):
                if os.path.exists(leftover):
                    os.unlink(leftover)
    return path
