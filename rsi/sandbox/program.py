"""The program process and the judge's handle on it (stdlib only: runs inside the sandbox, prepended to
the harness source).

The program process execs the untrusted source and serves load/call requests over a pipe pair with
length-prefixed JSON frames; its answers are tagged JSON (rsi.sandbox.codec) that the judge rebuilds from
plain builtins. The handle forks it, enforces deadlines, detects death, timeout and memory exhaustion,
and turns them into sticky `Fatal` errors that test code cannot swallow.
"""

import builtins
import json
import os
import select
import struct
import sys
import time

try:  # on the host this is a separate module; in the sandbox its source is prepended to this one
    from rsi.sandbox.codec import CodecError, decode, decode_untrusted, encode
except ImportError:
    pass

MAX_MESSAGE = 16 << 20
_HDR = struct.Struct(">I")


# ----------------------------------------------------------------------------------------------- framing
def send_msg(fd: int, obj: dict) -> None:
    data = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
    view = memoryview(_HDR.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv_msg_blocking(fd: int) -> dict:
    (n,) = _HDR.unpack(_read_exact(fd, 4))
    if n > MAX_MESSAGE:
        raise EOFError
    return json.loads(_read_exact(fd, n))


# ------------------------------------------------------------------------------------ program process
def _describe_globals(ns: dict) -> dict:
    """name -> ["call"] | ["module", modname] | ["value", encoded] for what test code may reference."""
    out = {}
    for name, value in list(ns.items()):
        if name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            out[name] = ["module", str(getattr(value, "__name__", name))]
        elif callable(value):
            out[name] = ["call"]
        else:
            try:
                out[name] = ["value", encode(value)]
            except Exception:
                pass
    return out


def _exc_reply(exc: BaseException) -> dict:
    try:
        msg = str(exc)
    except BaseException:
        msg = "<unprintable>"
    return {"ok": False, "exc": type(exc).__name__, "msg": msg[:2000]}


def program_main(rfd: int, wfd: int) -> None:
    """Serve load/call requests for one program. Everything here may be subverted by the program; the
    judge relies on none of it beyond the bytes it sends back."""
    ns: dict = {"__name__": "__candidate__", "__builtins__": builtins}
    while True:
        try:
            req = recv_msg_blocking(rfd)
        except BaseException:
            os._exit(0)
        try:
            if req["op"] == "load":
                exec(compile(req["source"], "<program>", "exec", dont_inherit=True), ns)
                reply = {"ok": True, "names": _describe_globals(ns)}
            else:
                args, kwargs = decode(req["args"]), decode(req["kwargs"])
                value = ns[req["name"]](*args, **kwargs)
                reply = {"ok": True, "value": encode(value)}
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: they are answers too
            reply = _exc_reply(exc)
        for stream in (sys.stdout, sys.stderr):  # the process ends with SIGKILL: nothing flushes later
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            send_msg(wfd, reply)
        except BaseException as exc:
            send_msg(wfd, _exc_reply(exc))


# -------------------------------------------------------------------------------------- judge process
class Fatal(BaseException):
    """Something happened to the program that makes the current test unpassable (sticky)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProgramError(Exception):
    """A program exception whose type is not a builtin, re-raised in the judge with the same message."""


class Program:
    """The judge's handle on the program process: fork, RPC with deadline, death and timeout detection."""

    def __init__(self, cpu_limit: float) -> None:
        self.cpu_limit = cpu_limit
        to_child_r, self.wfd = os.pipe()
        self.rfd, to_parent_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # program process
            try:
                # Drop every fd but stdio and the RPC pair: above all the result channel and the job.
                low, high = sorted((to_child_r, to_parent_w))
                os.closerange(3, low)
                os.closerange(low + 1, high)
                os.closerange(high + 1, 1 << 16)
                program_main(to_child_r, to_parent_w)
            finally:
                os._exit(0)
        os.close(to_child_r)
        os.close(to_parent_w)
        self.pidfd = os.pidfd_open(self.pid)
        os.set_blocking(self.rfd, False)
        self.buf = b""
        self.fatal: Fatal | None = None
        self.last_exc: BaseException | None = None

    def _kill(self) -> None:
        for pid in (self.pid, -1):  # -1: every process of this sandbox but the judge (and init)
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def _died(self, deadline: float) -> Fatal:
        # The channel closed; give the process until the deadline to actually exit (it may have closed
        # the pipe and kept running), then report how it ended.
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            self._kill()
            os.waitpid(self.pid, 0)
            return Fatal("timeout", "time limit exceeded")
        try:
            _, status, usage = os.wait4(self.pid, 0)
            cpu = usage.ru_utime + usage.ru_stime
        except ChildProcessError:
            status, cpu = 0, 0.0
        self._kill()
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            # SIGXCPU, or SIGKILL at the hard limit, after using the CPU budget: that is a time limit.
            if sig in (24, 9) and cpu >= self.cpu_limit - 0.05:
                return Fatal("timeout", f"CPU time limit exceeded (signal {sig})")
            return Fatal("signal", f"program killed by signal {sig}")
        return Fatal("error", f"program exited with status {os.waitstatus_to_exitcode(status)}")

    def request(self, msg: dict, deadline: float) -> dict:
        if self.fatal is not None:
            raise self.fatal
        try:
            send_msg(self.wfd, msg)
            return self._recv(deadline)
        except Fatal as f:
            self.fatal = f
            raise
        except OSError:  # EPIPE: the program is gone
            self.fatal = self._died(deadline)
            raise self.fatal from None

    def _recv(self, deadline: float) -> dict:
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        exited = False
        while True:
            if len(self.buf) >= 4:
                (n,) = _HDR.unpack(self.buf[:4])
                if n > MAX_MESSAGE:
                    self._kill()
                    raise Fatal("error", "program sent an oversized reply")
                if len(self.buf) >= 4 + n:
                    data, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    try:
                        reply = json.loads(data)
                    except (ValueError, RecursionError):
                        self._kill()
                        raise Fatal("error", "program sent a malformed reply") from None
                    if type(reply) is not dict or type(reply.get("ok")) is not bool:
                        self._kill()
                        raise Fatal("error", "program sent a malformed reply")
                    return reply
            try:
                chunk = os.read(self.rfd, 1 << 20)
            except BlockingIOError:
                chunk = None
            if chunk:
                self.buf += chunk
                continue
            if chunk == b"" or exited:
                raise self._died(deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise Fatal("timeout", "time limit exceeded")
            for fd, _ in poller.poll(remaining * 1000):
                if fd == self.pidfd:
                    exited = True  # drain what it wrote before dying, then report the death

    def load(self, source: str, deadline: float) -> dict:
        reply = self.request({"op": "load", "source": source}, deadline)
        if not reply["ok"]:
            raise self.program_exception(reply)
        return reply["names"]

    def call(self, name: str, args: tuple, kwargs: dict, deadline: float) -> object:
        msg = {"op": "call", "name": name, "args": encode(list(args)), "kwargs": encode(kwargs)}
        reply = self.request(msg, deadline)
        if not reply["ok"]:
            raise self.program_exception(reply)
        try:
            return decode_untrusted(reply.get("value"))
        except CodecError as exc:
            raise ProgramError(f"unreadable return value: {exc}") from None

    def program_exception(self, reply: dict) -> BaseException:
        name, msg = str(reply.get("exc")), str(reply.get("msg"))
        if name == "MemoryError":
            self.fatal = Fatal("memory", "memory limit exceeded")
            return self.fatal
        cls = getattr(builtins, name, None)
        # Builtin exception types keep their type so `except ValueError` in test code still works, except
        # those that steer iteration: a StopIteration out of `candidate` inside `all(map(...))` would end
        # the map early and pass the test. Those arrive as ProgramError (as PEP 479 does for generators).
        if (
            isinstance(cls, type)
            and issubclass(cls, Exception)
            and not issubclass(cls, (Warning, StopIteration, StopAsyncIteration))
        ):
            try:
                exc: BaseException = cls(msg)
            except Exception:
                exc = ProgramError(msg)
        else:
            exc = ProgramError(msg)
        self.last_exc = exc
        return exc

    def close(self) -> None:
        self._kill()
        reap_all()


def reap_all() -> None:
    """Wait for every child, adopted orphans included (the judge is pid 1 or a subreaper), after kill(-1):
    SIGKILL cannot be caught, and killed processes cannot fork, so this ends."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
