"""Launchers: how the harness process is started in isolation. Two, chosen by `sandbox.launcher`.

bwrap     user/pid/net/ipc/uts/cgroup/mount namespaces via bubblewrap, `/usr` read-only, `/` and `/dev`
          read-only, one size-limited tmpfs (/dev/shm, with /tmp a link to it) as the only writable place,
          no /proc. The pid namespace dies with the harness, taking every descendant with it; each job's
          judge is pid 1 of a nested one and loads the seccomp filter itself, having dropped every
          capability. Needs unprivileged user namespaces, not root.
landlock  for hosts without user namespaces (many Kubernetes clusters): the harness confines itself
          with Landlock (filesystem, TCP, abstract sockets, signals), no_new_privs and the same seccomp
          filter (sockets of every family denied) before any untrusted code. The server is a subreaper,
          so the job's processes stay below it; as root the slot uid is swept as well. The program's
          only writable dir is a size-limited tmpfs on the slot's work dir, which needs root to mount;
          without it the program gets no writable dir (the host disk would have no cap). As non-root,
          Landlock's signal scope (ABI 6, Linux 6.12) is required: it keeps the server's kill(-1)
          between jobs, and the program's, inside the sandbox.

As root each slot runs under its own uid (an extra layer); otherwise under the caller's. Always with a
cleared environment and stdin on /dev/null.

Network: bwrap runs with its own (empty) network namespace rather than `--share-net`. The seccomp filter
already refuses non-Unix sockets, but Unix sockets stay allowed (multiprocessing needs them) and the
abstract Unix namespace is per network namespace: with the host's netns a program could reach any host
daemon listening on an abstract address. The measured cost is ~8 ms per launch, paid for that wall.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from rsi.sandbox.bootstrap import harness_pyc
from rsi.sandbox.config import Limits, SandboxConfig
from rsi.sandbox.confine import landlock_abi
from rsi.sandbox.slots import Slot, uid_tasks

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
_TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEV_FILES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
HARNESS_INSIDE = "/rsi-harness.pyc"


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    workdir_inside: str  # the program's writable dir as the harness sees it
    harness_extra: dict = field(default_factory=dict)  # merged into the harness config
    sweep_after: bool = False  # no pid namespace: the host kills the server's tree (and the slot uid)


class SandboxUnavailable(RuntimeError):
    """No isolation is possible on this host with this launcher; the message says what it needs."""


SYSTEM_PYTHON = "/usr/bin/python3"


@cache
def interpreter(python: str = "") -> tuple[str, str]:
    """(interpreter path, prefix to expose read-only). Default: the distribution's python3 (readable by
    the slot uids, unlike a python under /root), else the host's base interpreter. Never a venv's
    site-packages: the harness and the programs get the bare standard library."""
    if not python:
        python = (
            SYSTEM_PYTHON
            if os.path.exists(SYSTEM_PYTHON)
            else os.path.join(sys.base_prefix, "bin", os.path.basename(sys.executable))
        )
    exe = os.path.realpath(python)
    return exe, os.path.realpath(os.path.dirname(os.path.dirname(exe)))


def _python_cmd(python: str, harness: str, cfg: str) -> list[str]:
    # -I: no env vars, no user site, no script dir or cwd on sys.path; -S: no site (the host's
    # dist-packages stay out); -B: nothing written; optimisation stays 0, so asserts are never stripped.
    return [python, "-I", "-S", "-B", harness, cfg]


def lock_dir_for(path: str) -> str:
    """Root uses `path`; any other user a directory of its own next to it (`<path>-<uid>`), since
    the lock dir holds the harness every run executes."""
    return path if os.geteuid() == 0 else f"{path.rstrip('/')}-{os.geteuid()}"


def user_namespaces_available() -> str:
    """'' when an unprivileged process may create a user namespace here, else why not."""
    for path, bad in (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return f"{path} is {bad}"
        except OSError:
            continue
    return ""


def check_lock_dir(path: str) -> None:
    """The lock dir holds the harness bytecode every run executes: it must be ours and not writable by
    anyone else (a shared /tmp could otherwise hand us someone's directory)."""
    os.makedirs(path, mode=0o711, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PermissionError(
            f"sandbox lock_dir {path} must be a directory owned by us, not group/other-writable"
        )


class BwrapLauncher:
    name = "bwrap"

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        why = user_namespaces_available()
        if why:
            raise SandboxUnavailable(
                f"the bwrap launcher needs unprivileged user namespaces ({why}); enable them, or use "
                "sandbox.launcher=landlock (Landlock, Linux 5.13+ as root, 6.12+ as any other user)"
            )
        self.python, prefix = interpreter(cfg.python)
        args = [
            cfg.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_SYS_ADMIN",  # in the sandbox's own user namespace, for the server's per-job pid namespace
            "--clearenv",
        ]
        if cfg.share_net:
            args.append("--share-net")
        for k, v in {**ENV, "HOME": "/tmp", "TMPDIR": "/tmp"}.items():
            args += ["--setenv", k, v]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in _TOP_LINKS:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        if not prefix.startswith("/usr/"):
            args += ["--ro-bind", prefix, prefix]
        for path in _ETC_FILES:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        lock_dir = lock_dir_for(cfg.lock_dir)
        check_lock_dir(lock_dir)
        self.harness = harness_pyc(self.python, lock_dir)
        self.base = args + ["--ro-bind", self.harness, HARNESS_INSIDE, "--dev", "/dev"]

    def spec(
        self, slot: Slot, limits: Limits, cfg_json_fn: Callable[[dict], str], seccomp_fd: int
    ) -> LaunchSpec:
        # One tmpfs, one size: /dev/shm (POSIX semaphores and shared memory live there) with /tmp a
        # link to it. Then / and /dev (bwrap's own tmpfs) go read-only: nothing else is writable, so a
        # wipe of that one tmpfs leaves nothing of one job for the next.
        argv = self.base + [
            "--size",
            str(limits.tmpfs_mb << 20),
            "--tmpfs",
            "/dev/shm",
            "--symlink",
            "/dev/shm",
            "/tmp",
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--chdir",
            "/tmp",
            "--",
        ]
        # The judge of each job loads the seccomp filter itself, after leaving the server's capabilities
        # behind: the server needs CAP_SYS_ADMIN to clone each judge into a pid namespace, nothing else.
        cfg = cfg_json_fn(
            {"workdir": "/tmp", "wipe": ["/dev/shm"], "seccomp_fd": seccomp_fd, "pidns_per_job": True}
        )
        return LaunchSpec(
            argv + _python_cmd(self.python, HARNESS_INSIDE, cfg), {}, "/", (seccomp_fd,), "/tmp"
        )


class LandlockLauncher:
    name = "landlock"

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        abi = landlock_abi()
        need = 1 if os.geteuid() == 0 else 6
        if abi < need:
            raise SandboxUnavailable(
                f"the landlock launcher needs Landlock ABI {need} (this kernel has "
                f"{abi or 'no Landlock'}): ABI 1 is Linux 5.13 (as root), ABI 6 Linux 6.12 (as any other "
                "user, for its signal scope); or use sandbox.launcher=bwrap where user namespaces exist"
            )
        self.python, prefix = interpreter(cfg.python)
        reads = ["/usr", *[p for p in _TOP_LINKS if os.path.exists(p)], *_ETC_FILES]
        if not prefix.startswith("/usr/"):
            reads.append(prefix)
        lock_dir = lock_dir_for(cfg.lock_dir)
        check_lock_dir(lock_dir)
        self.harness = harness_pyc(self.python, lock_dir)
        self.reads = [*reads, self.harness]

    def spec(
        self, slot: Slot, limits: Limits, cfg_json_fn: Callable[[dict], str], seccomp_fd: int
    ) -> LaunchSpec:
        # Writable only when a size-limited tmpfs is mounted there (root): the host disk has no cap.
        writable = [slot.workdir] if slot.workdir_mb else []
        ll = {"read": [*self.reads, slot.workdir], "write": writable, "dev": list(_DEV_FILES)}
        extra = {"workdir": slot.workdir, "wipe": [slot.workdir], "landlock": ll, "seccomp_fd": seccomp_fd}
        if not slot.own_uid:  # RLIMIT_NPROC counts the caller's own tasks too
            extra["nproc_base"] = uid_tasks(slot.uid)
        cfg = cfg_json_fn(extra)
        env = {**ENV, "HOME": slot.workdir, "TMPDIR": slot.workdir}
        return LaunchSpec(
            _python_cmd(self.python, self.harness, cfg),
            env,
            slot.workdir,
            (seccomp_fd,),
            slot.workdir,
            sweep_after=True,
        )


def make_launcher(cfg: SandboxConfig) -> BwrapLauncher | LandlockLauncher:
    return BwrapLauncher(cfg) if cfg.launcher == "bwrap" else LandlockLauncher(cfg)
