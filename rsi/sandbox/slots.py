"""Slots: one uid per concurrent run, so RLIMIT_NPROC (counted per uid) contains a fork bomb and a
"kill every process of this uid" sweep touches nothing else.

Uids are claimed with flock on per-uid lock files, so any number of workers on one node (Ray actors,
CLI runs) never share a uid, whatever their layout. The lock dies with the process that holds it.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shutil
import subprocess
import time
from dataclasses import dataclass

_KILL = "/bin/kill"


@dataclass
class Slot:
    uid: int
    gid: int
    workdir: str  # host directory the Landlock launcher gives the program as its only writable place
    lock_fd: int


def _claim(lock_dir: str, uid: int) -> int | None:
    fd = os.open(os.path.join(lock_dir, f"uid-{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class SlotPool:
    """A fixed set of slots claimed at construction; `take()` blocks until one is free."""

    def __init__(self, n: int, uid_base: int, uid_count: int, lock_dir: str) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the sandbox needs root (CAP_SETUID) to run each slot under its own uid")
        os.makedirs(lock_dir, mode=0o711, exist_ok=True)
        self.slots: list[Slot] = []
        for uid in range(uid_base, uid_base + uid_count):
            if len(self.slots) == n:
                break
            fd = _claim(lock_dir, uid)
            if fd is None:
                continue
            workdir = os.path.join(lock_dir, f"work-{uid}")
            slot = Slot(uid, uid, workdir, fd)
            sweep(slot)  # a previous holder may have died mid-run
            reset_workdir(slot)
            self.slots.append(slot)
        if len(self.slots) < n:
            self.close()
            raise RuntimeError(
                f"only {len(self.slots)} of {n} sandbox uids free in [{uid_base}, +{uid_count})"
            )
        self._free: queue.Queue[Slot] = queue.Queue()
        for slot in self.slots:
            self._free.put(slot)

    def take(self) -> Slot:
        return self._free.get()

    def give(self, slot: Slot) -> None:
        self._free.put(slot)

    def close(self) -> None:
        for slot in self.slots:
            sweep(slot)
            shutil.rmtree(slot.workdir, ignore_errors=True)
            os.close(slot.lock_fd)
        self.slots = []


def reset_workdir(slot: Slot) -> None:
    """Empty, slot-owned, private. Removed as root without following links the program left there."""
    shutil.rmtree(slot.workdir, ignore_errors=True)
    os.mkdir(slot.workdir, 0o700)
    os.chown(slot.workdir, slot.uid, slot.gid)


def uid_processes(uid: int, zombies: bool = True) -> list[int]:
    """Pids whose real uid is `uid` (read from status: a non-dumpable process's /proc dir is root's).
    Zombies are included by default: until reaped they still count against the uid's process limit."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                head = f.read(1024)
        except OSError:
            continue
        state = uid_line = b""
        for line in head.split(b"\n"):
            if line.startswith(b"State:"):
                state = line.split()[1]
            elif line.startswith(b"Uid:"):
                uid_line = line
                break
        if uid_line and int(uid_line.split()[1]) == uid and (zombies or state != b"Z"):
            pids.append(int(name))
    return pids


def sweep(slot: Slot, wait_s: float = 5.0) -> bool:
    """SIGKILL every process of the slot's uid, then wait (bounded) until none is left, zombies included,
    so the next run starts with the uid's whole process budget. kill(-1) as that uid is atomic against
    fork (the kernel holds the task list while it signals), so a fork bomb cannot outrun it. Zombies whose
    parent died are reaped by the host's init. True when the uid is clean."""
    deadline = time.monotonic() + wait_s
    while True:
        if uid_processes(slot.uid, zombies=False):
            subprocess.run(
                [_KILL, "-KILL", "--", "-1"],
                user=slot.uid,
                group=slot.gid,
                extra_groups=[],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                check=False,
            )
        elif not uid_processes(slot.uid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
