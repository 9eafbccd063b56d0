"""Self-confinement the harness applies to itself before any untrusted code runs (stdlib only: it runs
inside the sandbox, prepended to the harness source).

Rlimits apply under both launchers. Landlock, no_new_privs and the seccomp filter are applied here only
by the Landlock launcher; under bubblewrap the namespaces and `--seccomp` already did that work, and
skipping ctypes there keeps each launch a few milliseconds cheaper.
"""

import os
import resource

# Landlock filesystem rights (linux/landlock.h), by ABI version that introduced them.
LL_EXECUTE = 1 << 0
LL_WRITE_FILE = 1 << 1
LL_READ_FILE = 1 << 2
LL_READ_DIR = 1 << 3
LL_TRUNCATE = 1 << 14
LL_IOCTL_DEV = 1 << 15
_LL_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_LL_FS_BY_ABI = {1: _LL_FS_V1, 2: _LL_FS_V1 | 1 << 13, 3: _LL_FS_V1 | 1 << 13 | LL_TRUNCATE}
LL_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP (ABI 4)
LL_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL (ABI 6)
_LL_RULE_PATH_BENEATH = 1
_LL_CREATE_RULESET_VERSION = 1
_NR = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}  # create_ruleset, add_rule, restrict_self

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_SECCOMP_MODE_FILTER = 2


class ConfineError(OSError):
    """Confinement could not be applied: the harness must refuse to run the program (fail closed)."""


def set_rlimits(limits: dict, nproc_base: int = 0) -> None:
    """Limits for the sandbox's lifetime (soft == hard, so nothing inside can raise them back).
    RLIMIT_NPROC counts every task of the real uid in its user namespace: `nproc_base` is what the host
    already runs under that uid where the sandbox has no uid (or user namespace) of its own."""
    mb = 1 << 20
    for which, value in (
        (resource.RLIMIT_NPROC, nproc_base + int(limits["nproc"])),
        (resource.RLIMIT_FSIZE, int(limits["file_mb"]) * mb),
        (resource.RLIMIT_NOFILE, int(limits["nofile"])),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


def set_job_rlimits(limits: dict) -> None:
    """Per-job limits, set in each job's fresh judge process and inherited by the program: address space,
    and CPU time (SIGXCPU at the soft limit, SIGKILL a second later for programs that ignore it)."""
    mem = int(limits["memory_mb"]) << 20
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _libc():  # noqa: ANN202 - ctypes is imported lazily, only the Landlock launcher needs it
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, rc: int, what: str) -> int:  # noqa: ANN001
    if rc < 0:
        err = ctypes.get_errno()
        raise ConfineError(err, f"{what}: {os.strerror(err)}")
    return rc


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when unavailable."""
    ctypes, libc = _libc()
    machine = os.uname().machine
    if machine not in _NR:
        return 0
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(_NR[machine][0], None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_CREATE_RULESET_VERSION))
    return max(int(rc), 0)


def apply_landlock(read_paths: list, write_paths: list, dev_files: list) -> int:
    """Restrict the filesystem to read-only `read_paths`, read-write `write_paths` and the `dev_files`;
    deny TCP bind/connect, abstract Unix sockets and signals to processes outside (where the ABI has them).
    Returns the ABI used. Raises ConfineError when Landlock is missing: never silently unconfined."""
    ctypes, libc = _libc()
    abi = landlock_abi()
    if abi < 1:
        raise ConfineError(95, "Landlock is not available on this kernel")
    nr_create, nr_add, nr_restrict = _NR[os.uname().machine]
    fs = _LL_FS_BY_ABI.get(abi, _LL_FS_BY_ABI[3] | (LL_IOCTL_DEV if abi >= 5 else 0))
    net = LL_NET_ALL if abi >= 4 else 0
    scoped = LL_SCOPE_ALL if abi >= 6 else 0
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(ctypes, libc.syscall(nr_create, ctypes.byref(attr), ctypes.c_size_t(size), 0), "ruleset")

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    read_dir = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
    file_rights = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (LL_TRUNCATE if abi >= 3 else 0)
    rules = [(p, read_dir) for p in read_paths] + [(p, fs) for p in write_paths]
    rules += [(p, LL_READ_FILE | LL_WRITE_FILE) for p in dev_files]
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    access &= file_rights
                rule = PathBeneath(access & fs, fd)
                _check(
                    ctypes, libc.syscall(nr_add, ruleset, _LL_RULE_PATH_BENEATH, ctypes.byref(rule), 0), path
                )
            finally:
                os.close(fd)
        no_new_privs()
        _check(ctypes, libc.syscall(nr_restrict, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def scope_signals() -> bool:
    """Enter a nested Landlock domain that may not signal processes outside it (ABI >= 6): the job's
    processes can then no longer kill or stop the sandbox's server. False where the kernel lacks it."""
    ctypes, libc = _libc()
    if landlock_abi() < 6:
        return False
    nr_create, _, nr_restrict = _NR[os.uname().machine]
    attr = (ctypes.c_uint64 * 3)(0, 0, LL_SCOPE_ALL)
    ruleset = _check(ctypes, libc.syscall(nr_create, ctypes.byref(attr), ctypes.c_size_t(24), 0), "ruleset")
    try:
        no_new_privs()
        _check(ctypes, libc.syscall(nr_restrict, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return True


_CLONE_NEWPID = 0x20000000
_SIGCHLD = 17
_NR_CLONE = {"x86_64": 56, "aarch64": 220}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4


def fork_new_pid_namespace() -> int:
    """os.fork(), with the child as pid 1 of a new pid namespace. A raw clone(2) rather than unshare:
    unshare would move every later child of the caller into that namespace, which dies with its first
    process. Called through pythonapi so the GIL stays held, with the interpreter's own before/after-fork
    hooks around it, as os.fork does."""
    import ctypes

    api = ctypes.pythonapi
    api.syscall.restype = ctypes.c_long
    zero = ctypes.c_ulong(0)
    api.PyOS_BeforeFork()
    pid = api.syscall(
        ctypes.c_long(_NR_CLONE[os.uname().machine]),
        ctypes.c_ulong(_CLONE_NEWPID | _SIGCHLD),
        zero,
        zero,
        zero,
        zero,
    )
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise ConfineError(ctypes.get_errno(), "clone(CLONE_NEWPID) failed")
    return int(pid)


def drop_capabilities() -> None:
    """No capability left in any set (the judge and the program need none; the server keeps its own)."""
    ctypes, libc = _libc()

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    _check(ctypes, libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient caps")
    empty = (Data * 2)()
    _check(ctypes, libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), empty), "capset")


def no_new_privs() -> None:
    ctypes, libc = _libc()
    _check(ctypes, libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def install_seccomp(program: bytes) -> None:
    """Load a classic-BPF filter (as built by rsi.sandbox.seccomp) on this process and its descendants."""
    ctypes, libc = _libc()

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    no_new_privs()
    _check(ctypes, libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def harden_process() -> None:
    """Not dumpable: a same-uid program cannot open this process's /proc files, memory or fds. Killed with
    the launcher, so nothing outlives a crashed host. A subreaper: orphans of the program's processes are
    re-parented here (not to the host's init) and reaped before exit, so no zombie keeps counting against
    the slot uid's process limit."""
    ctypes, libc = _libc()
    _check(ctypes, libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    _check(ctypes, libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0), "pdeathsig")
    _check(ctypes, libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
