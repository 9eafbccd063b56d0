"""A run's folder: where every file of a run lives, and the rules that keep what a user already has.

    run.dir/
      .hydra/config.yaml          the run's config (compared on resume)
      .lock                       held while a run works in the folder
      corpus/iter_NNN/            Parquet parts and manifest.json of iteration NNN
      checkpoints/vN/             the weights DPO wrote for version N
      evals/vN/                   version N's held-out evaluation
      iterations/iter_NNN.json    one record per finished iteration; summary.json lists them all
      tb/, mlruns/, logs/, report/

A run claims its folder before it writes anything there: one run at a time (a lock that a killed run's
successor takes over, since the kernel drops it with the process), a folder holding another run is refused
unless the run resumes it or moves it aside (`run.overwrite`), and a resume whose config changes the corpus
is refused, naming the keys. Nothing rsi did not create in this run is ever deleted.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG = Path(".hydra") / "config.yaml"
LOCK = ".lock"
# What a resume may change: how the run is carried out, never what it writes into the corpus.
RESUMABLE = ("run.resume", "run.overwrite", "run.commit_chains", "loop.iterations", "loop.chains_in_flight",
             "log.", "tracker", "cluster.", "backend.replicas", "backend.judge_replicas", "backend.max_in_flight",
             "backend.max_restarts", "backend.num_cpus", "backend.num_gpus", "backend.threads",
             "backend.kv_cache_gb", "sandbox.workers", "sandbox.slots", "sandbox.resource", "sandbox.lock_dir",
             "sandbox.uid_base", "sandbox.uid_count", "sandbox.jobs_per_sandbox", "train.max_failures",
             "train.save_steps")


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked; the message says what to do instead."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def corpus(self, iteration: int) -> Path:
        return self.root / "corpus" / f"iter_{iteration:03d}"

    def checkpoint(self, version: int) -> Path:
        return self.root / "checkpoints" / f"v{version}"

    def evals(self, version: int) -> Path:
        return self.root / "evals" / f"v{version}"

    def record(self, iteration: int) -> Path:
        return self.root / "iterations" / f"iter_{iteration:03d}.json"

    def save_config(self, config: dict[str, Any]) -> None:
        """Record `config` as the run's own (what a resume is compared with), atomically."""
        import yaml

        self.config.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config.with_name(f".{self.config.name}.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.config)


def held_entries(root: Path) -> list[str]:
    """What the folder holds besides its lock and its logs (a run that stopped at its checks leaves only those)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.name not in (LOCK, "logs"))


@contextmanager
def claim(root: Path, config: dict[str, Any], *, resume: bool, overwrite: bool,
          defaults: dict[str, Any] | None = None) -> Iterator[RunDir]:
    """Hold `root` for one run: lock it, then refuse or move aside what another run left there, or check that a
    resume keeps the corpus' config (`config`, the run's whole config, plain; `defaults`: the value of a key the
    saved config lacks). The run records its config with `RunDir.save_config` once its checks passed."""
    if resume and overwrite:
        raise RunDirError("run.resume=true and run.overwrite=true contradict each other: pick one")
    if root.exists() and not root.is_dir():
        raise RunDirError(f"run.dir: {root} is a file, not a folder")
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        held = held_entries(root)
        if held and overwrite:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = next(a for n in range(1000) if not (a := root.with_name(
                f"{root.name}.old-{stamp}{f'-{n}' if n else ''}")).exists())
            _move_aside(root, aside)
        elif held and resume:
            _check_resume(root, config, defaults)
        elif held:
            raise RunDirError(
                f"run.dir: {root} already holds a run ({', '.join(held[:4])}{', …' if len(held) > 4 else ''}); "
                "continue it with run.resume=true, choose another run.dir, or pass run.overwrite=true to move "
                "it aside")
        yield RunDir(root)


def _move_aside(root: Path, aside: Path) -> None:
    """Rename every entry but the lock into `aside`: the folder itself stays, so the lock held on it stays
    valid and a second run waiting for it sees a fresh folder."""
    aside.mkdir()
    for entry in root.iterdir():
        if entry.name != LOCK:
            entry.rename(aside / entry.name)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    path = root / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunDirError(f"run.dir: {root} is in use by a run ({holder}); wait for it, or choose another "
                              "run.dir") from None
        # A lock left by a killed run is free again: flock dies with its process, so taking it over is safe.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): tree}


def changed_keys(saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """Keys whose value differs between two configs and that change what the corpus holds. A key the saved
    config lacks (a run of an older rsi) counts as its default from `defaults`."""
    a, b, d = flatten(saved), flatten(now), flatten(defaults or {})
    missing = object()
    return sorted(k for k in set(a) | set(b) if a.get(k, d.get(k, missing)) != b.get(k, missing)
                  and not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE))


def _check_resume(root: Path, config: dict[str, Any], defaults: dict[str, Any] | None) -> None:
    import yaml

    path = root / CONFIG
    if not path.is_file():
        return  # a folder from a run that stopped before it wrote its config: nothing to compare
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunDirError(f"run.dir: {path} is not readable YAML ({type(e).__name__}); the resume cannot tell "
                          "whether its config matches") from e
    if not isinstance(saved, dict):
        raise RunDirError(f"run.dir: {path} holds no config mapping; the resume cannot tell whether its config "
                          "matches")
    keys = changed_keys(saved, config, defaults)
    if keys:
        shown = ", ".join(f"{k} ({flatten(saved).get(k)!r} -> {flatten(config).get(k)!r})" for k in keys[:6])
        raise RunDirError(f"run.resume: the config differs from the one {root} was run with in keys that change "
                          f"the corpus: {shown}{' …' if len(keys) > 6 else ''}; resume with the same values, or "
                          "start a new run.dir")
