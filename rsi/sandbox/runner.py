"""One sandbox launch, host side: start the harness, pump its pipes, enforce the deadline and output cap,
clean up, and turn the harness's records into a Verdict.

Never waits for pipe EOF (a daemon child can hold a pipe open forever): the loop ends when the harness
process exits (a pidfd) or the deadline passes, then drains what is already buffered without blocking.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from functools import cache

from rsi.sandbox import codec
from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.launchers import BwrapLauncher, LandlockLauncher
from rsi.sandbox.seccomp import build_filter
from rsi.sandbox.slots import Slot, reset_workdir, sweep
from rsi.sandbox.verdict import (
    ERROR,
    FAIL,
    INFRA,
    OUTPUT_LIMIT,
    PASS,
    TIMEOUT,
    TestResult,
    Verdict,
    decode_output,
    worst,
)

RESULT_CAP = 32 << 20  # the harness's records (JSON case outputs can be large); it is trusted, this is a guard
GRACE_S = 2.0  # beyond the harness's own deadline: its startup, teardown and the records' trip


@cache
def seccomp_filter(allow_unix: bool) -> bytes:
    return build_filter(allow_unix_sockets=allow_unix)


def _pipe_with(data: bytes) -> int:
    """A pipe's read end already holding `data` (bwrap and the harness read filters/jobs to EOF)."""
    if len(data) > 60000:
        fd = os.memfd_create("rsi-sandbox", os.MFD_CLOEXEC)
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def wire_job(job: dict) -> dict:
    """What enters the sandbox: for JSON cases only the calls; expected values stay on the host."""
    if job["format"] == "humaneval":
        return {k: job[k] for k in ("format", "program", "tests", "entry_point")}
    calls = [{"function": c["function"], "args": c.get("args", []), "kwargs": c.get("kwargs") or {}}
             for c in job["cases"]]
    return {"format": "json", "program": job["program"], "cases": calls}


def _job_fd(job: dict) -> int:
    fd = os.memfd_create("rsi-job", os.MFD_CLOEXEC)
    data = json.dumps(wire_job(job)).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _deadline_s(job: dict, limits: Limits) -> float:
    units = 1 if job["format"] == "humaneval" else 1 + 2 * len(job["cases"])
    return limits.timeout_s * units + GRACE_S


def launch(job: dict, cfg: SandboxConfig, launcher: BwrapLauncher | LandlockLauncher, slot: Slot,
           limits: Limits) -> Verdict:
    """Run one job (see harness.Judge) in one fresh sandbox and return its verdict."""
    t0 = time.monotonic()
    owned: list[int] = []
    proc = None
    try:
        allow_unix = launcher.name == "bwrap" and not cfg.share_net
        seccomp_fd = _pipe_with(seccomp_filter(allow_unix))
        owned.append(seccomp_fd)
        job_fd = _job_fd(job)
        owned.append(job_fd)
        res_r, res_w = os.pipe()
        owned += [res_r, res_w]

        def cfg_json(extra: dict) -> str:
            return json.dumps({"result_fd": res_w, "job_fd": job_fd, "limits": limits.for_harness(), **extra})

        spec = launcher.spec(slot, limits, cfg_json, seccomp_fd)
        proc = subprocess.Popen(
            spec.argv, env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(*spec.pass_fds, res_w, job_fd), close_fds=True,
            user=slot.uid, group=slot.gid, extra_groups=[], start_new_session=True,
        )
    except OSError as exc:
        for fd in owned:
            os.close(fd)
        if proc is not None:
            proc.kill()
            proc.wait()
        return Verdict(INFRA, message=f"launch failed: {exc}", wall_ms=(time.monotonic() - t0) * 1e3)
    for fd in (seccomp_fd, job_fd, res_w):
        os.close(fd)
    try:
        return _supervise(proc, res_r, job, limits, spec.sweep_after, slot, t0, cfg)
    finally:
        os.close(res_r)


def _supervise(proc: subprocess.Popen, res_r: int, job: dict, limits: Limits, sweep_after: bool, slot: Slot,
               t0: float, cfg: SandboxConfig) -> Verdict:
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()  # type: ignore[union-attr]
    bufs = {out_fd: bytearray(), err_fd: bytearray(), res_r: bytearray()}
    totals = {out_fd: 0, err_fd: 0}
    for fd in bufs:
        os.set_blocking(fd, False)
    pidfd = os.pidfd_open(proc.pid)
    poller = select.poll()
    for fd in (*bufs, pidfd):
        poller.register(fd, select.POLLIN)
    deadline = t0 + _deadline_s(job, limits)
    host_status = ""
    eof: set[int] = set()

    def drain(fd: int) -> None:
        nonlocal host_status
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                if fd not in eof:
                    eof.add(fd)
                    poller.unregister(fd)
                return
            if fd == res_r:
                if len(bufs[fd]) + len(chunk) > RESULT_CAP:
                    host_status = host_status or ERROR
                    return
                bufs[fd] += chunk
            else:
                totals[fd] += len(chunk)
                room = limits.keep_bytes + 1 - len(bufs[fd])
                if room > 0:
                    bufs[fd] += chunk[:room]
                if totals[out_fd] + totals[err_fd] > limits.output_bytes:
                    host_status = host_status or OUTPUT_LIMIT
                    return

    exited = False
    try:
        while not exited and not host_status:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                host_status = TIMEOUT
                break
            for fd, _ in poller.poll(remaining * 1000):
                if fd == pidfd:
                    exited = True
                else:
                    drain(fd)
        if not exited:
            if sweep_after:
                proc.kill()  # the Landlock harness; the sweep below takes the rest
            else:
                _kill_tree(proc)
        proc.wait()
        for fd in (out_fd, err_fd, res_r):
            drain(fd)
    finally:
        os.close(pidfd)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        if sweep_after or host_status:
            sweep(slot)
        if sweep_after:
            reset_workdir(slot)
    wall_ms = (time.monotonic() - t0) * 1e3
    stdout = decode_output(bytes(bufs[out_fd]), limits.keep_bytes)
    stderr = decode_output(bytes(bufs[err_fd]), limits.keep_bytes)
    verdict = build_verdict(bytes(bufs[res_r]), job, host_status)
    verdict.stdout, verdict.stderr, verdict.wall_ms = stdout, stderr, wall_ms
    return verdict


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the harness before its launcher: under bwrap the harness is pid 1 of the sandbox's pid
    namespace, so every process in it dies with it, and bwrap (still alive) reaps it; killing bwrap first
    would orphan a zombie to the host's init. The Landlock launcher's harness is `proc` itself."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.kill()


def _records(raw: bytes) -> list[dict]:
    out = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
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
        return rel_tol > 0 and abs(a - b) <= rel_tol * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel_tol) for k in a)
    return type(a) is type(b) and a == b


def build_verdict(raw: bytes, job: dict, host_status: str) -> Verdict:
    """Decide from the harness's records. A test passes only on its own record; anything missing fails."""
    recs = _records(raw)
    kinds = [r.get("t") for r in recs]
    if "hello" not in kinds:
        infra = next((r for r in recs if r.get("t") == "infra"), None)
        msg = infra.get("message", "") if infra else "harness did not start"
        if host_status == "output_limit":  # nothing untrusted ran before hello; but say what we saw
            msg += " (output limit)"
        return Verdict(INFRA, message=str(msg))
    done = "done" in kinds
    by_index = {int(r["i"]): r for r in recs if r.get("t") == "test" and isinstance(r.get("i"), int)}
    load = next((r for r in recs if r.get("t") == "load"), None)
    missing_status = host_status or ERROR
    missing_msg = {TIMEOUT: "time limit exceeded", OUTPUT_LIMIT: "output limit exceeded"}.get(
        missing_status, "harness ended before reporting this test")
    tests: list[TestResult] = []
    if job["format"] == "humaneval":
        r = by_index.get(0)
        tests.append(TestResult("check", str(r["status"]), str(r.get("message", ""))) if r
                     else TestResult("check", missing_status, missing_msg))
    else:
        for i, case in enumerate(job["cases"]):
            name = case.get("name") or f"case {i}"
            r = by_index.get(i)
            if r is None:
                tests.append(TestResult(name, missing_status, missing_msg))
            elif r.get("status") != "ok":
                tests.append(TestResult(name, str(r.get("status")), str(r.get("message", ""))))
            else:
                try:
                    got = codec.to_plain(codec.decode_untrusted(r.get("value")))
                except codec.CodecError as exc:
                    tests.append(TestResult(name, ERROR, f"unreadable output: {exc}"))
                    continue
                ok = _same(got, case["expected"], float(case.get("rel_tol", 0.0)))
                msg = "" if ok else f"expected {json.dumps(case['expected'])[:500]}, got {json.dumps(got)[:500]}"
                tests.append(TestResult(name, PASS if ok else FAIL, msg, output=got))
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
            message = f"program failed to load: {load.get('message', '')}"
        elif not done:
            message = "harness killed before finishing"
        else:
            message = next((t.message for t in tests if t.status == status), "")
    return Verdict(status, tests, message=message)
