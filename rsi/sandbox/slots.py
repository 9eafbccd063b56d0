"""Slots: one per concurrent run. As root each slot also gets a uid of its own, an extra layer: RLIMIT_NPROC
(counted per uid) contains a fork bomb and a "kill every process of this uid" sweep touches nothing else.
Without root the slots run under the caller's uid; the launchers' own isolation (bwrap's user and pid
namespaces, or Landlock's scopes and the server as subreaper) then does that work.

Slots are claimed with flock on per-slot lock files, so any number of workers on one node (Ray actors,
CLI runs) never share one, whatever their layout. The lock dies with the process that holds it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import queue
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rsi.sandbox.wipe import wipe_tree

_KILL = "/bin/kill"
_MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 0x2, 0x4, 0x20
_MNT_DETACH = 2


@dataclass
class Slot:
    uid: int
    gid: int
    workdir: str  # host directory the Landlock launcher gives the program (writable only when capped)
    lock_fd: int
    own_uid: bool = True  # root gave this slot a uid of its own; otherwise it is the caller's uid
    workdir_mb: int = 0  # size of the tmpfs mounted on workdir; 0: none (then the program may not write)
    number: int = 0  # the slot's lock number, unique on the node (the uid, as root)


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
        os.makedirs(lock_dir, mode=0o711, exist_ok=True)
        root = os.geteuid() == 0
        self.slots: list[Slot] = []
        for uid in range(uid_base, uid_base + uid_count):
            if len(self.slots) == n:
                break
            fd = _claim(lock_dir, uid)
            if fd is None:
                continue
            workdir = os.path.join(lock_dir, f"work-{uid}")
            if root:
                slot = Slot(uid, uid, workdir, fd, number=uid)
            else:
                slot = Slot(os.getuid(), os.getgid(), workdir, fd, own_uid=False, number=uid)
            sweep(slot)  # a previous holder may have died mid-run
            try:
                reset_workdir(slot)
            except OSError:
                os.close(fd)
                self.close()
                raise
            self.slots.append(slot)
        if len(self.slots) < n:
            self.close()
            raise RuntimeError(f"only {len(self.slots)} of {n} sandbox slots free in [{uid_base}, +{uid_count})")
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
            unmount_workdir(slot)
            wipe_tree(slot.workdir)
            try:
                os.rmdir(slot.workdir)
            except OSError:
                pass
            os.close(slot.lock_fd)
        self.slots = []


def reset_workdir(slot: Slot) -> None:
    """Empty, slot-owned, private, whatever the last program left in it (a tree of any depth, dirs it
    made unreadable, links, which are removed and never followed)."""
    try:
        os.mkdir(slot.workdir, 0o700)
    except FileExistsError:
        if not os.path.isdir(slot.workdir) or os.path.islink(slot.workdir):
            os.unlink(slot.workdir)
            os.mkdir(slot.workdir, 0o700)
    if not wipe_tree(slot.workdir):
        raise OSError(f"sandbox work dir {slot.workdir} could not be emptied")
    if slot.own_uid:
        os.chown(slot.workdir, slot.uid, slot.gid)
    os.chmod(slot.workdir, 0o700)


def mount_workdir(slot: Slot, size_mb: int) -> bool:
    """Put a tmpfs of `size_mb` on the slot's work dir, so everything the program writes there counts
    against a size (the host's disk has none). Needs CAP_SYS_ADMIN (root); False where that is missing,
    and then the Landlock launcher gives the program no writable directory at all."""
    if slot.workdir_mb == size_mb:
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"size={size_mb}m,mode=0700,uid={slot.uid},gid={slot.gid}".encode()
    flags = _MS_NOSUID | _MS_NODEV | (_MS_REMOUNT if os.path.ismount(slot.workdir) else 0)
    if libc.mount(b"tmpfs", slot.workdir.encode(), b"tmpfs", flags, opts) != 0:
        return False
    slot.workdir_mb = size_mb
    return True


def unmount_workdir(slot: Slot) -> None:
    if os.path.ismount(slot.workdir):
        ctypes.CDLL(None, use_errno=True).umount2(slot.workdir.encode(), _MNT_DETACH)
    slot.workdir_mb = 0


def _proc_status() -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """(pid, {field: value}) of every process's /proc status, as read (a process gone meanwhile is skipped);
    status, not the /proc dir's owner, since a non-dumpable process's dir is root's."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                head = f.read(2048)
        except OSError:
            continue
        yield int(name), dict(line.split(b":", 1) for line in head.split(b"\n") if b":" in line)


def _real_uid(fields: dict[bytes, bytes]) -> int | None:
    try:
        return int(fields[b"Uid"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


def uid_tasks(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) whose real uid is `uid`."""
    return sum(int(fields.get(b"Threads", b"0")) for _, fields in _proc_status() if _real_uid(fields) == uid)


def _running(pid: int) -> bool:
    """Not a zombie (a zombie cannot fork, and only its parent can make it go away)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (all threads' children, recursively)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def kill_tree(pid: int, wait_s: float = 5.0) -> bool:
    """SIGKILL everything below `pid`, then `pid`, and wait (bounded) until all of them are gone, zombies
    included (they count against RLIMIT_NPROC until the host's init reaps them). For a sandbox without a
    uid or pid namespace of its own: its server is a subreaper, so every process the job made stays below
    it while it lives, and it is killed last. Repeated until nothing runs (RLIMIT_NPROC bounds a fork
    bomb). True when everything is gone."""
    deadline = time.monotonic() + wait_s
    seen: set[int] = set()
    while True:
        kids = [k for k in descendants(pid) if _running(k)]
        seen.update(kids)
        if not kids or time.monotonic() > deadline:
            break
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return wait_gone(seen, deadline)


def wait_gone(pids: set[int] | list[int], deadline: float) -> bool:
    """Wait until none of `pids` exists any more, reaped zombies included (orphans are reaped by the
    host's init, in its own time); False at the deadline."""
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def uid_processes(uid: int, zombies: bool = True) -> list[int]:
    """Pids whose real uid is `uid`. Zombies are included by default: until reaped they still count against
    the uid's process limit."""
    return [pid for pid, fields in _proc_status()
            if _real_uid(fields) == uid and (zombies or fields.get(b"State", b"").split()[:1] != [b"Z"])]


def sweep(slot: Slot, wait_s: float = 5.0) -> bool:
    """SIGKILL every process of the slot's uid, then wait (bounded) until none is left, zombies included,
    so the next run starts with the uid's whole process budget. kill(-1) as that uid is atomic against
    fork (the kernel holds the task list while it signals), so a fork bomb cannot outrun it. Zombies whose
    parent died are reaped by the host's init. True when the uid is clean. A slot without a uid of its
    own has nothing to sweep by uid (that would be the caller's own processes)."""
    if not slot.own_uid:
        return True
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
