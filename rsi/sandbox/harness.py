"""The in-sandbox harness (stdlib only; codec + confine + program + this source, compiled into one script).

Two processes inside one sandbox, so the program can never touch the verdict:

- the *judge* (this script's main process) holds the only fd to the host's result channel and runs the
  test code. It confines itself (rlimits, and Landlock + seccomp under the Landlock launcher), reports
  `hello`, then forks the *program* process **before** reading the job, so the program's memory never holds
  the test code or expected values.
- the *program* process closes every fd but stdio and its RPC pipes, execs the program source and serves
  calls. Return values travel back as tagged JSON (rsi.sandbox.codec) and are rebuilt by the judge from
  plain builtins: no pickle, no `__eq__` of the program's making, no frames or gc to walk (other process).

The judge records a test as passed only when the test code returns normally *and* nothing fatal happened to
the program (death, timeout, memory, protocol abuse). Fatal events are sticky and raised as BaseException so
`except Exception` in test code cannot swallow them. Records go out as JSON lines:
hello, load, test (one per test), done. The host trusts only this channel.
"""

import builtins
import importlib
import json
import os
import select
import sys
import time

try:  # on the host these are separate modules; in the sandbox their source is prepended to this one
    from rsi.sandbox.codec import CodecError, decode_untrusted, encode
    from rsi.sandbox.confine import (
        apply_landlock,
        drop_capabilities,
        fork_new_pid_namespace,
        harden_process,
        install_seccomp,
        scope_signals,
        set_job_rlimits,
        set_rlimits,
    )
    from rsi.sandbox.program import Fatal, Program, reap_all
    from rsi.sandbox.wipe import wipe_tree
except ImportError:
    pass

# Modules a program's global may name that the judge imports itself for the test code (as the program
# would have them). An allowlist: importing any stdlib module by name would let a program make the trusted
# judge run a tool's `__main__` or anything else with import-time effects.
FORWARDED_MODULES = frozenset(
    {
        "array", "bisect", "cmath", "collections", "collections.abc", "copy", "dataclasses", "datetime",
        "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math",
        "numbers", "operator", "random", "re", "statistics", "string", "struct", "sys", "textwrap",
        "time", "typing", "unicodedata",
    }
)  # fmt: skip
# Names the test code must always resolve to the real builtins, whatever the program defines.
_BUILTIN_NAMES = frozenset(dir(builtins))


class Judge:
    def __init__(self, result_fd: int, job_fd: int, limits: dict) -> None:
        self.result_fd = result_fd
        self.job_fd = job_fd
        self.limits = limits
        self.load_failure = ("error", "")
        self.program = Program(float(self.limits["cpu_s"]))

    def emit(self, **record: object) -> None:
        line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n"
        view = memoryview(line.encode())
        while view:
            view = view[os.write(self.result_fd, view) :]

    def read_job(self) -> dict:
        chunks = []
        while True:
            chunk = os.read(self.job_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self.job_fd)
        return json.loads(b"".join(chunks))

    def load(self, source: str, timeout: float) -> dict | None:
        """The program's globals, or None with `load_failure` set to (status, message)."""
        try:
            names = self.program.load(source, time.monotonic() + timeout)
        except Fatal as f:
            self.load_failure = (f.status, str(f))
        except BaseException as exc:
            self.load_failure = ("memory" if isinstance(exc, MemoryError) else "error", str(exc))
        else:
            self.emit(t="load", ok=True)
            return names
        self.emit(t="load", ok=False, status=self.load_failure[0], message=self.load_failure[1][:2000])
        return None

    def _proxy(self, name: str, deadline_box: list) -> object:
        program = self.program

        def proxy(*args: object, **kwargs: object) -> object:
            return program.call(name, args, kwargs, deadline_box[0])

        proxy.__name__ = proxy.__qualname__ = name
        return proxy

    def _namespace(self, names: dict, deadline_box: list) -> dict:
        ns: dict = {"__name__": "__tests__", "__builtins__": builtins}
        for name, desc in names.items():
            if name in _BUILTIN_NAMES:
                continue  # a program's `abs` or `all` must not answer for the test code's
            if desc[0] == "call":
                ns[name] = self._proxy(name, deadline_box)
            elif desc[0] == "module":
                if str(desc[1]) in FORWARDED_MODULES:
                    try:
                        ns[name] = importlib.import_module(str(desc[1]))
                    except Exception:
                        pass
            elif desc[0] == "value":
                try:
                    ns[name] = decode_untrusted(desc[1])
                except CodecError:
                    pass
        return ns

    def run_check(self, job: dict) -> None:
        """HumanEval format: test code defines `check(candidate)`; one test, `check(<entry_point>)`."""
        timeout = float(self.limits["timeout_s"])
        deadline = [time.monotonic() + timeout]
        names = self.load(job["program"], timeout)
        if names is None:
            status, message = self.load_failure
            self.emit(t="test", i=0, name="check", status=status, message=message[:2000])
            return
        entry = job["entry_point"]
        status, message = "pass", ""
        try:
            if not entry.isidentifier():
                raise ValueError(f"bad entry point {entry!r}")
            if job.get("helpers"):
                # Only the entry point comes from the program; everything else the test code names is the
                # prompt's own, so a redefined helper (or any other name) cannot make the tests check nothing.
                ns = self._namespace({entry: names[entry]} if entry in names else {}, deadline)
                ns.update(_trusted_helpers(job["helpers"], entry))
            else:
                ns = self._namespace(names, deadline)
            code = compile(
                job["tests"] + f"\n\ncheck({entry})\n", "<tests>", "exec", dont_inherit=True, optimize=0
            )
            exec(code, ns)
        except Fatal as f:
            status, message = f.status, str(f)
        except AssertionError as exc:
            status, message = ("error" if exc is self.program.last_exc else "fail"), str(exc)
        except BaseException as exc:
            status, message = ("memory" if isinstance(exc, MemoryError) else "error"), str(exc)
        if self.program.fatal is not None:  # the test code swallowed it; it still counts
            status, message = self.program.fatal.status, str(self.program.fatal)
        self.emit(t="test", i=0, name="check", status=status, message=message[:2000])

    def run_cases(self, job: dict) -> None:
        """JSON format: each case is a call; the judge returns the encoded output and the host compares it
        with the expected value, which never enters the sandbox."""
        timeout = float(self.limits["timeout_s"])
        names = self.load(job["program"], timeout)
        for i, case in enumerate(job["cases"]):
            if self.program.fatal is not None and names is not None:
                # A fatal case (death, timeout, memory) must not sink the others: fresh process, reload.
                self.program.close()
                self.program = Program(float(self.limits["cpu_s"]))
                names = self.load(job["program"], timeout)
            if names is None:
                status, message = self.load_failure
                self.emit(t="test", i=i, status=status, message=message[:2000])
                continue
            try:
                value = self.program.call(
                    case["function"], case["args"], case.get("kwargs") or {}, time.monotonic() + timeout
                )
                self.emit(t="test", i=i, status="ok", value=encode(value))
            except Fatal as f:
                self.emit(t="test", i=i, status=f.status, message=str(f)[:2000])
            except BaseException as exc:
                self.emit(t="test", i=i, status="error", message=f"{type(exc).__name__}: {exc}"[:2000])


def _trusted_helpers(source: str, entry: str) -> dict:
    """The definitions of the job's trusted helper source (a HumanEval prompt), run in the judge, minus
    the entry point (the prompt's stub): these, not the program's namesakes, answer the test code."""
    hns: dict = {"__name__": "__helpers__", "__builtins__": builtins}
    exec(compile(source, "<helpers>", "exec", dont_inherit=True, optimize=0), hns)
    return {k: v for k, v in hns.items() if not k.startswith("__") and k != entry}


def run_job(result_fd: int, job_fd: int, limits: dict) -> None:
    """One job, in a judge process of its own (forked by the server, never reused)."""
    judge = Judge(result_fd, job_fd, limits)
    judge.emit(t="hello")
    job = judge.read_job()
    try:
        if job["format"] == "humaneval":
            judge.run_check(job)
        else:
            judge.run_cases(job)
    finally:
        judge.program.close()
    judge.emit(t="done")


class Server:
    """The sandbox's long-lived process. It runs no untrusted code and never reads a job: per job it
    receives fds (stdout, stderr, result channel, job memfd) over the control socket, forks a fresh judge
    on them, waits for it within the deadline, then kills every other process in the sandbox (kill(-1)
    spares only the caller; under bwrap this is pid 1; under Landlock the signal scope keeps it inside the
    sandbox), reaps them and wipes the writable dirs, so nothing of one job reaches the next. It reports
    whether the wipe left the dirs empty; the host replaces a sandbox that is not clean.

    Under bwrap each judge is pid 1 of a pid namespace of its own (the server keeps CAP_SYS_ADMIN in the
    sandbox's user namespace for that alone): pids then start from 1 in every job, so the pid counter
    cannot carry what earlier jobs did. The judge drops every capability and loads the seccomp filter
    itself before it reads the job."""

    def __init__(self, cfg: dict) -> None:
        import socket

        self.ctrl = socket.socket(fileno=int(cfg["ctrl_fd"]))
        self.recv_fds = socket.recv_fds
        self.workdir = cfg["workdir"]
        self.wipe_dirs = cfg["wipe"]
        self.landlock = bool(cfg.get("landlock"))
        self.job_seccomp = b""
        if cfg.get("pidns_per_job"):
            with open(int(cfg["seccomp_fd"]), "rb") as f:
                self.job_seccomp = f.read()

    def send(self, **msg: object) -> None:
        self.ctrl.sendall(json.dumps(msg).encode())

    def serve(self) -> None:
        self.send(t="ready")
        while True:
            msg, fds, _, _ = self.recv_fds(self.ctrl, 1 << 16, 4)
            if not msg:
                return
            hdr = json.loads(msg)
            status, code, clean = self.one(hdr, fds)
            self.send(t="end", id=hdr["id"], status=status, exit=code, clean=clean)

    def one(self, hdr: dict, fds: list) -> tuple:
        out, err, res, job = fds
        limits = hdr["limits"]
        pid = fork_new_pid_namespace() if self.job_seccomp else os.fork()
        if pid == 0:  # the judge
            try:
                os.dup2(out, 1)
                os.dup2(err, 2)
                for fd in (out, err, self.ctrl.fileno()):
                    os.close(fd)
                set_job_rlimits(limits)
                if self.job_seccomp:
                    drop_capabilities()
                    install_seccomp(self.job_seccomp)
                if self.landlock:
                    # Same uid as this server and no pid namespace: only a Landlock signal scope keeps
                    # the job from killing it (where the kernel lacks one, that costs a restart).
                    scope_signals()
                os.chdir(self.workdir)
                run_job(res, job, limits)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        finished = bool(poller.poll(float(hdr["deadline_s"]) * 1000))
        os.close(pidfd)
        try:
            os.kill(-1, 9)
        except OSError:
            pass
        _, st = os.waitpid(pid, 0)
        reap_all()
        clean = all([wipe_tree(d) for d in self.wipe_dirs])
        return ("ok" if finished else "timeout"), st, clean


def main(argv: list) -> int:
    cfg = json.loads(argv[1])
    try:
        set_rlimits(cfg["limits"], int(cfg.get("nproc_base", 0)))
        if cfg.get("landlock"):
            ll = cfg["landlock"]
            harden_process()
            apply_landlock(ll["read"], ll["write"], ll["dev"])
            with open(int(cfg["seccomp_fd"]), "rb") as f:
                install_seccomp(f.read())
        server = Server(cfg)
    except BaseException as exc:
        os.write(2, f"rsi sandbox: confinement failed: {exc}\n".encode())
        return 3
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
