"""Seccomp filter for sandboxed programs, assembled as classic BPF in pure Python.

Built here rather than with libseccomp so the project needs no native binding: the filter is small, fixed
and reviewed in one place. Both launchers use the same bytes: bubblewrap loads them with `--seccomp FD`
just before exec; the Landlock launcher's harness loads them with prctl itself before any untrusted code.

Denied calls fail with EPERM (so Python raises PermissionError instead of dying mid-write); a foreign
architecture or the x32 ABI kills the process, since numbers there mean other calls.
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass

# BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

# seccomp return actions (linux/seccomp.h).
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97
AF_UNIX = 1

# seccomp_data offsets: nr, arch, instruction pointer, then six 64-bit args (low word first on LE).
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16
_OFF_ARG1_LO = 24

# Namespace flags of clone(2); any of them in a plain clone means a new namespace.
CLONE_NS_MASK = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)

# Calls nobody's solution needs and that widen the attack surface: debugging other processes or
# reaching into their memory/fds (ptrace, process_vm_*, pidfd_getfd, kcmp), namespaces and mounts
# (escape routes), kernel-side programs and keyrings, io_uring (its operations bypass seccomp), module
# loading, clocks, swap, reboot.
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "process_madvise",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
    "lookup_dcookie",
    "fanotify_init",
    "move_pages",
    "migrate_pages",
    # IPC objects outlive the process that made them (and under Landlock they are the host's): a job
    # could leave answers for later jobs in them, or hold memory no rlimit counts. Nobody's solution
    # needs them; multiprocessing uses POSIX semaphores, which are files in the sandbox's tmpfs.
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
)

# Calls that change a process's limits or scheduling: allowed on the caller itself only (pid argument 0),
# so a job can never lower the limits, priority or CPU set of the server that outlives it.
SELF_ONLY = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
# (which, who) calls: only (PRIO_PROCESS / IOPRIO_WHO_PROCESS, 0), never a process group or a whole uid.
SELF_ONLY_WHICH = {"setpriority": 0, "ioprio_set": 1}

_X86_64 = {
    "socket": 41,
    "clone": 56,
    "ptrace": 101,
    "syslog": 103,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "migrate_pages": 256,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "semget": 64,
    "semop": 65,
    "semctl": 66,
    "shmdt": 67,
    "msgget": 68,
    "msgsnd": 69,
    "msgrcv": 70,
    "msgctl": 71,
    "semtimedop": 220,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
    "setpriority": 141,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "sched_setaffinity": 203,
    "ioprio_set": 251,
    "prlimit64": 302,
    "sched_setattr": 314,
}
_AARCH64 = {
    "socket": 198,
    "clone": 220,
    "ptrace": 117,
    "syslog": 116,
    "vhangup": 58,
    "pivot_root": 41,
    "adjtimex": 171,
    "chroot": 51,
    "acct": 89,
    "settimeofday": 170,
    "mount": 40,
    "umount2": 39,
    "swapon": 224,
    "swapoff": 225,
    "reboot": 142,
    "sethostname": 161,
    "setdomainname": 162,
    "init_module": 105,
    "delete_module": 106,
    "quotactl": 60,
    "lookup_dcookie": 18,
    "clock_settime": 112,
    "kexec_load": 104,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "migrate_pages": 238,
    "unshare": 97,
    "move_pages": 239,
    "perf_event_open": 241,
    "fanotify_init": 262,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
    "clock_adjtime": 266,
    "setns": 268,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "finit_module": 273,
    "kexec_file_load": 294,
    "bpf": 280,
    "userfaultfd": 282,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "shmget": 194,
    "shmctl": 195,
    "shmat": 196,
    "shmdt": 197,
    "semget": 190,
    "semctl": 191,
    "semtimedop": 192,
    "semop": 193,
    "msgget": 186,
    "msgctl": 187,
    "msgrcv": 188,
    "msgsnd": 189,
    "mq_open": 180,
    "mq_unlink": 181,
    "mq_timedsend": 182,
    "mq_timedreceive": 183,
    "mq_notify": 184,
    "mq_getsetattr": 185,
    "setpriority": 140,
    "sched_setparam": 118,
    "sched_setscheduler": 119,
    "sched_setaffinity": 122,
    "ioprio_set": 30,
    "prlimit64": 261,
    "sched_setattr": 274,
}


@dataclass(frozen=True)
class Arch:
    name: str
    audit: int  # AUDIT_ARCH_* value the kernel reports in seccomp_data.arch
    table: dict[str, int]
    x32_bit: int | None  # syscall numbers with this bit set are the x32 ABI


ARCHES = {
    "x86_64": Arch("x86_64", 0xC000003E, _X86_64, 0x40000000),
    "aarch64": Arch("aarch64", 0xC00000B7, _AARCH64, None),
}


def native_arch() -> Arch:
    machine = platform.machine()
    arch = ARCHES.get({"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine))
    if arch is None:
        raise OSError(f"no seccomp syscall table for architecture {machine!r}")
    return arch


class _Asm:
    """Tiny assembler with forward labels: BPF jumps are relative and limited to 255 instructions."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.ins.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, jt, jf, k) in enumerate(self.ins):
            offs = []
            for target in (jt, jf):
                off = target if isinstance(target, int) else self.labels[str(target)] - pc - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump out of range at {pc}: {off}")
                offs.append(off)
            out += struct.pack("=HBBI", code, offs[0], offs[1], k)
        return bytes(out)


def build_filter(arch: Arch | None = None, allow_unix_sockets: bool = True) -> bytes:
    """Return the filter as raw `struct sock_filter[]` bytes (what bwrap --seccomp and prctl take).

    `allow_unix_sockets`: AF_UNIX socket() is allowed only where the launcher gives the sandbox its own
    network namespace (abstract sockets are per netns) and its own filesystem (no host socket paths).
    """
    arch = arch or native_arch()
    t = arch.table
    a = _Asm()
    a.op(_LD_W_ABS, _OFF_ARCH)
    a.op(_JEQ_K, arch.audit, 1, 0)
    a.op(_RET_K, RET_KILL_PROCESS)
    a.op(_LD_W_ABS, _OFF_NR)
    if arch.x32_bit is not None:
        a.op(_JGE_K, arch.x32_bit, "deny", 0)
    for name in DENIED:
        a.op(_JEQ_K, t[name], "deny", 0)
    # glibc tries clone3 first and falls back to clone on ENOSYS, where the flags are inspectable.
    a.op(_JEQ_K, t["clone3"], "enosys", 0)
    a.op(_JEQ_K, t["clone"], "clone", 0)
    a.op(_JEQ_K, t["socket"], "socket", 0)
    for name in SELF_ONLY:
        a.op(_JEQ_K, t[name], "self_pid", 0)
    for name, which in SELF_ONLY_WHICH.items():
        a.op(_JEQ_K, t[name], f"which_{which}", 0)
    a.op(_RET_K, RET_ALLOW)
    for which in sorted(set(SELF_ONLY_WHICH.values())):
        a.label(f"which_{which}")
        a.op(_LD_W_ABS, _OFF_ARG0_LO)
        a.op(_JEQ_K, which, 0, "deny")
        a.op(_LD_W_ABS, _OFF_ARG1_LO)
        a.op(_JEQ_K, 0, "allow", "deny")
    a.label("self_pid")
    a.op(_LD_W_ABS, _OFF_ARG0_LO)  # pid_t is 32 bits: the kernel ignores the high word
    a.op(_JEQ_K, 0, "allow", "deny")
    a.label("allow")
    a.op(_RET_K, RET_ALLOW)
    a.label("clone")
    a.op(_LD_W_ABS, _OFF_ARG0_LO)
    a.op(_JSET_K, CLONE_NS_MASK, "deny", 0)
    a.op(_RET_K, RET_ALLOW)
    a.label("socket")
    if allow_unix_sockets:
        a.op(_LD_W_ABS, _OFF_ARG0_LO)
        a.op(_JEQ_K, AF_UNIX, 0, "noafs")
        a.op(_RET_K, RET_ALLOW)
    a.label("noafs")
    a.op(_RET_K, RET_ERRNO | EAFNOSUPPORT)
    a.label("enosys")
    a.op(_RET_K, RET_ERRNO | ENOSYS)
    a.label("deny")
    a.op(_RET_K, RET_ERRNO | EPERM)
    return a.assemble()
