"""Typed sandbox configuration and per-run limits: the one type behind a run's `sandbox:` keys (rsi.config),
`rsi sandbox run`'s flags and the sandbox pool's actors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from rsi.choice import Choice


class Launcher(Choice):
    bwrap = "bwrap"  # bubblewrap: user, pid, mount and net namespaces
    landlock = "landlock"  # no namespaces needed (e.g. locked-down Kubernetes): Landlock + seccomp + rlimits


LAUNCHERS = tuple(m.value for m in Launcher)  # for argparse choices


# Inclusive bounds of each limit: beyond them a limit is off (a negative RLIMIT_AS is "unlimited") or no program
# could run. rsi.config checks a run's `sandbox.limits.*` against the same table.
LIMIT_BOUNDS: dict[str, tuple[float, float]] = {
    "timeout_s": (0.01, 86_400), "memory_mb": (16, 1 << 22), "nproc": (1, 1 << 16), "file_mb": (1, 1 << 20),
    "nofile": (16, 1 << 20), "tmpfs_mb": (1, 1 << 20), "output_bytes": (1, 1 << 34), "keep_bytes": (0, 1 << 34),
}


# Not frozen: OmegaConf makes a frozen dataclass read-only, and a run's overrides (sandbox.limits.memory_mb=…)
# must reach it. Nothing changes one after it is built; `with_` returns a copy.
@dataclass
class Limits:
    """Per-run resource limits. `timeout_s` is wall time for a HumanEval check (load + check) or per JSON
    case; the CPU rlimit follows it so a busy loop dies even if every clock is ignored."""

    timeout_s: float = 10.0
    memory_mb: int = 1024  # address space (RLIMIT_AS) of each process
    nproc: int = 64  # processes + threads of the slot's uid (why each slot needs its own uid)
    file_mb: int = 16  # largest file the program may write
    nofile: int = 128
    tmpfs_mb: int = 64  # size of the only writable directory (bwrap; landlock as root)
    output_bytes: int = 1 << 20  # stdout + stderr beyond this ends the run as output_limit
    keep_bytes: int = 8192  # stdout/stderr kept in the verdict, each

    def __post_init__(self) -> None:
        for key, (low, high) in LIMIT_BOUNDS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"sandbox.limits.{key} must be a number between {low:g} and {high:g}, got "
                                 f"{value!r}")

    def for_harness(self) -> dict:
        d = asdict(self)
        d["cpu_s"] = int(self.timeout_s) + 1
        return d

    def with_(self, **changes: object) -> Limits:
        return replace(self, **changes)


@dataclass
class SandboxConfig:
    launcher: Launcher = Launcher.bwrap
    workers: int = 1  # sandbox actors of a run's pool
    # a Ray custom resource each sandbox actor requests one unit of, so the actors run only on the nodes that
    # offer it (k8s/raycluster.yaml: the hardened `sandbox` worker group); None: anywhere
    resource: str | None = None
    slots: int = 2  # concurrent runs per worker; as root each slot also runs under its own uid
    uid_base: int = 61000  # slot uids (numbers of the slot locks without root): [uid_base, +uid_count)
    uid_count: int = 256  # size of the range; workers on one node lock distinct uids inside it
    lock_dir: str = "/tmp/rsi-sandbox"  # slot locks and (landlock) work dirs; "<lock_dir>-<uid>" if not root
    python: str = ""  # interpreter inside the sandbox; "" = the host's base interpreter
    bwrap: str = "bwrap"
    share_net: bool = False  # keep False: an own netns also hides the host's abstract Unix sockets
    infra_retries: int = 2  # a failed launch is retried, never scored as the program's fault
    canary: bool = True  # run the hostile self-test at start; refuse to judge if isolation is broken
    # Jobs one warm sandbox serves before a new one replaces it: a new one now and then bounds whatever slowly
    # accumulates in a long-lived server. Between jobs it is wiped and checked, and under bwrap each job has a
    # pid namespace of its own, so no job sees what earlier ones did. 1: a sandbox start per job (78 ms a job
    # instead of 9.6 for a trivial HumanEval check on 2 cores).
    jobs_per_sandbox: int = 2000
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        # Callers outside the typed config (argparse, scripts) pass plain strings: one check, one type.
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"sandbox.launcher must be one of {LAUNCHERS}, not {self.launcher!r}")
        object.__setattr__(self, "launcher", Launcher(self.launcher))
        if self.slots < 1 or self.uid_count < self.slots:
            raise ValueError("sandbox.slots must be >= 1 and <= uid_count")
        if self.jobs_per_sandbox < 1:
            raise ValueError("sandbox.jobs_per_sandbox must be >= 1")
        if self.uid_base < 1000:
            raise ValueError("sandbox.uid_base must not overlap system uids (< 1000)")

