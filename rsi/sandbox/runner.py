"""Host side of a slot's sandbox: start it, hand it jobs, pump each job's pipes, enforce deadlines and
the output cap, tear it down on anything unexpected, and turn the judge's records into a Verdict.

Never waits for pipe EOF (a daemon child can hold a pipe open forever): a job ends when the in-sandbox
server reports it over the control socket (after killing everything but itself), the server dies, or
the deadline passes; then what is already buffered is drained without blocking.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from functools import cache

from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.launchers import BwrapLauncher, LandlockLauncher
from rsi.sandbox.seccomp import build_filter
from rsi.sandbox.slots import Slot, descendants, kill_tree, mount_workdir, reset_workdir, sweep, wait_gone
from rsi.sandbox.verdict import ERROR, INFRA, OUTPUT_LIMIT, TIMEOUT, Verdict, build_verdict, decode_output

RESULT_CAP = 32 << 20  # the harness's records (JSON case outputs can be large); it is trusted, this is a guard
GRACE_S = 2.0  # host deadline beyond the server's own per-job deadline
JOB_GRACE_S = 1.0  # server deadline beyond the judge's: judge start-up and teardown
STARTUP_S = 20.0


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
        return {k: job[k] for k in ("format", "program", "tests", "entry_point", "helpers") if k in job}
    calls = [
        {"function": c["function"], "args": c.get("args", []), "kwargs": c.get("kwargs") or {}} for c in job["cases"]
    ]
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
    return limits.timeout_s * units + JOB_GRACE_S


class SlotRunner:
    """One slot's sandbox, kept warm across jobs. A fresh judge (and program) process per job; between jobs
    the in-sandbox server kills everything else and wipes the writable dirs. Any anomaly (server death, host
    deadline, output cap, bad control message, a wipe that left something, a server whose limits,
    priority or CPU set differ from when it started) tears the whole sandbox down; the next job starts a
    new one.
    """

    def __init__(self, cfg: SandboxConfig, launcher: BwrapLauncher | LandlockLauncher, slot: Slot) -> None:
        self.cfg, self.launcher, self.slot = cfg, launcher, slot
        self.proc: subprocess.Popen | None = None
        self.ctrl: socket.socket | None = None
        self.pidfd = -1
        self.key: tuple = ()
        self.jobs = 0
        self.next_id = 0
        self.server_pid = 0
        self.server_start_state: tuple = ()

    # ------------------------------------------------------------------------------------- lifecycle
    def _start(self, limits: Limits) -> str:
        """Start the sandbox server; '' on success, else why not (an infra failure)."""
        allow_unix = self.launcher.name == "bwrap" and not self.cfg.share_net
        if self.launcher.name == "landlock" and os.geteuid() == 0:
            try:
                reset_workdir(self.slot)
            except OSError as exc:
                return f"work dir unusable: {exc}"
            mount_workdir(self.slot, limits.tmpfs_mb)
        seccomp_fd = _pipe_with(seccomp_filter(allow_unix))
        host_end, box_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:

            def cfg_json(extra: dict) -> str:
                return json.dumps({"ctrl_fd": box_end.fileno(), "limits": limits.for_harness(), **extra})

            spec = self.launcher.spec(self.slot, limits, cfg_json, seccomp_fd)
            self.proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(*spec.pass_fds, box_end.fileno()),
                close_fds=True,
                start_new_session=True,
                **({"user": self.slot.uid, "group": self.slot.gid, "extra_groups": []} if self.slot.own_uid else {}),
            )
        except OSError as exc:
            host_end.close()
            return f"launch failed: {exc}"
        finally:
            os.close(seccomp_fd)
            box_end.close()
        self.ctrl, self.sweep_after = host_end, spec.sweep_after
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.key = _server_key(limits)
        self.jobs = 0
        msg = self._recv_ctrl(time.monotonic() + STARTUP_S)
        if msg is None or msg.get("t") != "ready":
            err = b""
            if self.proc.stderr is not None:
                os.set_blocking(self.proc.stderr.fileno(), False)
                try:
                    err = self.proc.stderr.read(4096) or b""
                except OSError:
                    pass
            self.stop()
            return "sandbox did not start: " + err.decode("utf-8", "replace").strip()
        self.proc.stderr.close()  # type: ignore[union-attr]  (the server writes nothing once ready)
        kids = _children(self.proc.pid)
        self.server_pid = self.proc.pid if self.sweep_after or not kids else kids[0]
        self.server_start_state = self.server_state()
        return ""

    def server_state(self) -> tuple:
        """What a job could try to change about the long-lived server: its limits, nice value,
        scheduling policy and priority, and CPU set, as the host's /proc shows them."""
        if not self.server_pid:
            return ()
        return process_state(self.server_pid)

    def stop(self) -> None:
        """Tear the sandbox down: harness first (see _kill_tree), then sweep the uid."""
        if self.proc is not None:
            if self.proc.poll() is None:
                if not self.sweep_after:
                    _kill_tree(self.proc)  # bwrap: the pid namespace dies with its pid 1
                elif self.slot.own_uid:
                    self.proc.kill()  # the slot uid is swept below
                else:
                    kill_tree(self.proc.pid)  # no uid of its own: its tree, server (a subreaper) last
            self.proc.wait()
            if self.proc.stderr and not self.proc.stderr.closed:
                self.proc.stderr.close()
            os.close(self.pidfd)
            self.ctrl.close()  # type: ignore[union-attr]
            self.proc, self.ctrl, self.pidfd = None, None, -1
            self.server_pid, self.server_start_state = 0, ()
            sweep(self.slot)
            if self.sweep_after:
                try:
                    reset_workdir(self.slot)
                except OSError:
                    pass  # the next start tries again and reports an infra failure if it cannot

    def _recv_ctrl(self, deadline: float) -> dict | None:
        """Next control message, None if the server died or the deadline passed."""
        poller = select.poll()
        poller.register(self.ctrl, select.POLLIN)  # type: ignore[arg-type]
        poller.register(self.pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            events = dict(poller.poll(remaining * 1000))
            if self.ctrl.fileno() in events:  # type: ignore[union-attr]
                return _parse_ctrl(self.ctrl.recv(1 << 16))  # type: ignore[union-attr]
            if events:
                return None

    # ------------------------------------------------------------------------------------------- jobs
    def run(self, job: dict, limits: Limits) -> Verdict:
        t0 = time.monotonic()
        if self.proc is not None and (self.key != _server_key(limits) or self.jobs >= self.cfg.jobs_per_sandbox):
            self.stop()
        if self.proc is None:
            why = self._start(limits)
            if why:
                return Verdict(INFRA, message=why, wall_ms=(time.monotonic() - t0) * 1e3)
        self.jobs += 1
        self.next_id += 1
        job_id = self.next_id
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        job_fd = _job_fd(job)
        deadline_s = _deadline_s(job, limits)
        hdr = json.dumps({"id": job_id, "limits": limits.for_harness(), "deadline_s": deadline_s}).encode()
        try:
            socket.send_fds(self.ctrl, [hdr], [out_w, err_w, res_w, job_fd])  # type: ignore[arg-type]
        except OSError as exc:
            for fd in (out_r, err_r, res_r):
                os.close(fd)
            self.stop()
            return Verdict(INFRA, message=f"sandbox server unreachable: {exc}", wall_ms=(time.monotonic() - t0) * 1e3)
        finally:
            for fd in (out_w, err_w, res_w, job_fd):
                os.close(fd)
        try:
            return self._supervise(job, job_id, limits, out_r, err_r, res_r, t0, t0 + deadline_s + GRACE_S)
        finally:
            for fd in (out_r, err_r, res_r):
                os.close(fd)

    def _supervise(
        self,
        job: dict,
        job_id: int,
        limits: Limits,
        out_fd: int,
        err_fd: int,
        res_r: int,
        t0: float,
        deadline: float,
    ) -> Verdict:
        bufs = {out_fd: bytearray(), err_fd: bytearray(), res_r: bytearray()}
        totals = {out_fd: 0, err_fd: 0}
        for fd in bufs:
            os.set_blocking(fd, False)
        poller = select.poll()
        for fd in (*bufs, self.ctrl.fileno(), self.pidfd):  # type: ignore[union-attr]
            poller.register(fd, select.POLLIN)
        host_status = ""
        eof: set[int] = set()

        def drain(fd: int) -> None:
            nonlocal host_status
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:
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

        end: dict | None = None
        server_died = False
        while end is None and not host_status and not server_died:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                host_status = TIMEOUT
                break
            for fd, _ in poller.poll(remaining * 1000):
                if fd == self.pidfd:
                    server_died = True
                elif fd == self.ctrl.fileno():  # type: ignore[union-attr]
                    end = _parse_ctrl(self.ctrl.recv(1 << 16))  # type: ignore[union-attr]
                    if end is None or end.get("t") != "end" or end.get("id") != job_id:
                        server_died, end = True, None
                else:
                    drain(fd)
        if end is None:
            self.stop()  # the job's processes die with the sandbox; drain what they left in the pipes
        else:
            if end.get("status") == "timeout":
                host_status = TIMEOUT
            if end.get("clean") is not True or self.server_state() != self.server_start_state:
                self.stop()  # something of this job would outlive it: the next job gets a new sandbox
        for fd in (out_fd, err_fd, res_r):
            drain(fd)
        if host_status == OUTPUT_LIMIT:
            self.stop()  # the program may still be writing; it and everything else go with the sandbox
        try:
            verdict = build_verdict(bytes(bufs[res_r]), job, host_status)
        except Exception as exc:  # a bug of ours must cost this job its verdict, not the batch
            verdict = Verdict(ERROR, message=f"verdict could not be built: {type(exc).__name__}")
        verdict.stdout = decode_output(bytes(bufs[out_fd]), limits.keep_bytes)
        verdict.stderr = decode_output(bytes(bufs[err_fd]), limits.keep_bytes)
        verdict.wall_ms = (time.monotonic() - t0) * 1e3
        return verdict

    def pids(self) -> set[int]:
        """The warm sandbox's own processes (launcher and server), for leak checks."""
        if self.proc is None:
            return set()
        return {self.proc.pid, *_children(self.proc.pid)}


def _server_key(limits: Limits) -> tuple:
    # What is fixed for a server's lifetime; a job asking for other values gets a fresh sandbox.
    return (limits.nproc, limits.nofile, limits.file_mb, limits.tmpfs_mb)


def _parse_ctrl(data: bytes) -> dict | None:
    try:
        msg = json.loads(data)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def process_state(pid: int) -> tuple:
    """What a job could change about a long-lived process, read from the host's /proc: its limits, nice value,
    real-time priority, scheduling policy and CPU set; ("gone",) once it has ended."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            limits = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            cpus = [line for line in f if line.startswith("Cpus_allowed")]
    except (OSError, IndexError):
        return ("gone",)
    return (limits, stat[16], stat[37], stat[38], *cpus)  # nice, real-time priority, policy


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the harness before its launcher: under bwrap the harness is pid 1 of the sandbox's pid
    namespace, so every process in it dies with it, and bwrap (still alive) reaps it; killing bwrap first
    would orphan a zombie to the host's init. The Landlock launcher's harness is `proc` itself. Then wait
    (bounded) until the namespace's orphans are reaped too: without a uid of its own the sandbox's
    processes count against the caller's process limit until they are."""
    inside = descendants(proc.pid)
    for pid in _children(proc.pid):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.kill()
    wait_gone(inside, time.monotonic() + 5.0)
