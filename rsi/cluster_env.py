"""Where a run's Ray lives and what its workers run in (`cluster:` in the config): joining a cluster, the
runtime environment every actor and task gets on every node, and the storage check a multi-node run needs.

A driver started by `ray job submit` (or with RAY_ADDRESS set) joins that cluster; without either, rsi starts an
embedded Ray. Actors run in the interpreter Ray's node runs unless `cluster.runtime_env` says otherwise: right on
one machine and in an image with rsi installed, wrong on a cluster whose nodes run Ray from another Python.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsi.choice import Choice

URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "abfss://")


class RuntimeEnvKind(Choice):
    inherit = "inherit"  # the interpreter Ray's node runs: one machine, or nodes whose image holds rsi
    python = "python"  # py_executable: `cluster.python`, an interpreter at the same path on every node
    pip = "pip"  # Ray installs `cluster.pip` (default: rsi's own requirements) per node, cached across jobs
    image = "image"  # image_uri: every worker runs in the container `cluster.image`


@dataclass
class ClusterConfig:
    address: str | None = None  # None: RAY_ADDRESS's cluster when set, else an embedded Ray; "auto" or ray://…
    num_cpus: int | None = None  # logical CPUs of the embedded Ray (None: max(4, cores))
    runtime_env: RuntimeEnvKind = RuntimeEnvKind.inherit  # what rsi's actors and tasks run in on every node
    python: str | None = None  # runtime_env=python: the interpreter (None: the driver's own, e.g. .venv/bin/python)
    pip: list[str] = field(default_factory=list)  # runtime_env=pip: requirements (empty: rsi's own)
    image: str | None = None  # runtime_env=image: the container image every worker runs in
    env_vars: dict[str, str] = field(default_factory=dict)  # set in every actor and task
    # Ray Train's storage_path for DPO runs: a path every node sees, or s3://… / gs://… (pyarrow filesystems).
    # None: beside each checkpoint under run.dir.
    storage_path: str | None = None


class ClusterError(ValueError):
    """A cluster setting that cannot work; the message names the key and what to set."""


def is_uri(path: str) -> bool:
    return "://" in path


def runtime_env(cluster: ClusterConfig) -> dict[str, Any]:
    """The runtime_env rsi passes to `ray.init`: every actor and task of the run inherits it (a submitted job's
    own runtime_env, e.g. its working_dir, is merged in by Ray)."""
    kind = RuntimeEnvKind(cluster.runtime_env)
    env: dict[str, Any] = {}
    if kind == RuntimeEnvKind.python:
        env["py_executable"] = cluster.python or sys.executable
    elif kind == RuntimeEnvKind.pip:
        env["pip"] = {"packages": list(cluster.pip) or own_requirements(), "pip_check": False}
    elif kind == RuntimeEnvKind.image:
        if not cluster.image:
            raise ClusterError("cluster.image: cluster.runtime_env=image needs an image name")
        env["image_uri"] = cluster.image
    if cluster.env_vars:
        env["env_vars"] = {str(k): str(v) for k, v in cluster.env_vars.items()}
    return env


def own_requirements() -> list[str]:
    """rsi's installed dependencies (no extras), as pip requirement strings."""
    from importlib.metadata import requires

    return [r for r in (requires("rsi") or []) if "extra ==" not in r]


def ray_init_kwargs(cluster: ClusterConfig, environ: Mapping[str, str] = os.environ, *,
                    verbose: bool = True) -> dict[str, Any]:
    """`ray.init`'s arguments: join `cluster.address`, else RAY_ADDRESS's cluster (what `ray job submit` sets),
    else start an embedded Ray sized by `cluster.num_cpus`. Sizes only apply to an embedded Ray: passing them
    while joining is what fails inside a submitted job. Not `verbose`: workers' output is not echoed here."""
    kwargs: dict[str, Any] = {}
    address = cluster.address or environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
    else:
        # "local": a Ray of this run's own, even where `ray start --head` left its address behind, which a plain
        # ray.init() would join (and then refuse num_cpus).
        kwargs["address"] = "local"
        # Logical CPUs: the engine idles while the trainer works, so a small box may oversubscribe safely.
        kwargs["num_cpus"] = cluster.num_cpus or max(4, os.cpu_count() or 1)
    env = runtime_env(cluster)
    if env:
        kwargs["runtime_env"] = env
    if not verbose:  # actors' output stays in Ray's session logs; Ray's own logger is left to the caller's setup
        kwargs.update(log_to_driver=False, configure_logging=False)
    return kwargs


def init_ray(cluster: ClusterConfig, *, verbose: bool = True) -> str:
    """Start or join Ray as `ray_init_kwargs` says; returns one line saying which, for the console."""
    import ray

    if ray.is_initialized():
        return "Ray: the one this process already runs"
    kwargs = ray_init_kwargs(cluster, verbose=verbose)
    ray.init(**kwargs)
    if kwargs["address"] != "local":
        return f"Ray: joined the cluster at {kwargs['address']}"
    try:  # the address `ray start --head` records; a plain ray.init() would have joined it
        from ray._private.services import find_bootstrap_address

        left = find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - private API: the line below is only a hint
        left = None
    left = f" (not the one `ray start` left at {left}: cluster.address=auto joins that)" if left else ""
    return f"Ray: a private instance of {kwargs['num_cpus']} CPUs on this machine{left}"


# ---- shared storage ------------------------------------------------------------------------------------------
def check_job_run_dir(run_dir: str, environ: Mapping[str, str] = os.environ) -> None:
    """Inside a submitted Ray job the working directory is Ray's copy of `--working-dir`, deleted with the job:
    a relative run.dir would put the corpus and checkpoints there. Fails before anything starts."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in environ and not (is_uri(run_dir) or os.path.isabs(run_dir)):
        raise ClusterError(f"run.dir: {run_dir!r} is relative, and this is a Ray job whose working directory is "
                           "a temporary copy deleted with the job; set run.dir to an absolute path (on shared "
                           "storage for a multi-node cluster) or an s3://… / gs://… URI")


def check_storage_uri(key: str, uri: str) -> None:
    """A URI must name a filesystem pyarrow can open (s3, gs, hdfs, abfs); checked without touching it."""
    if not uri.startswith(URI_SCHEMES):
        raise ClusterError(f"{key}: {uri!r} has an unknown scheme (use a path, or one of {', '.join(URI_SCHEMES)})")


def storage_problems(paths: Mapping[str, str | None], nodes: list[str],
                     sees: Callable[[str, str], bool]) -> list[str]:
    """For each key whose path is local, the nodes that do not see it: `sees(node, path)` says whether a file
    written at `path` by the driver is visible from `node`. A URI is shared by construction; one node always
    shares with itself."""
    problems = []
    if len(nodes) < 2:
        return problems
    for key, path in paths.items():
        if path is None or is_uri(path):
            continue
        blind = [n for n in nodes if not sees(n, path)]
        if blind:
            hint = " or an s3://… / gs://… URI" if key == "cluster.storage_path" else ""
            problems.append(f"{key}: {path} is not visible from node(s) {', '.join(blind)}; a run on "
                            f"{len(nodes)} nodes needs storage every node sees: set {key} to a shared mount "
                            f"(e.g. /shared/runs/NAME){hint}")
    return problems


def check_shared_storage(run_dir: str, storage_path: str | None) -> None:
    """On a multi-node cluster, fail unless every node sees run.dir (the engines load each checkpoint from it)
    and Ray Train's storage: a probe file written here is looked for by a zero-CPU task pinned to each node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if storage_path is not None and is_uri(storage_path):
        check_storage_uri("cluster.storage_path", storage_path)
    nodes = {n["NodeID"]: n.get("NodeManagerAddress", n["NodeID"]) for n in ray.nodes() if n.get("Alive")}
    if len(nodes) < 2:
        return

    @ray.remote(num_cpus=0)
    def exists(path: str) -> bool:
        return os.path.exists(path)

    probes: dict[str, Path] = {}

    def sees(node_id: str, path: str) -> bool:
        if path not in probes:
            folder = Path(path).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            probes[path] = folder / f".rsi-storage-probe-{uuid.uuid4().hex[:8]}"
            probes[path].write_text("rsi")
        task = exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        return bool(ray.get(task.remote(str(probes[path])), timeout=120))

    try:
        names = [f"{addr} ({nid[:8]})" for nid, addr in nodes.items()]
        by_name = dict(zip(names, nodes))
        problems = storage_problems({"run.dir": run_dir, "cluster.storage_path": storage_path}, names,
                                    lambda name, path: sees(by_name[name], path))
    finally:
        for probe in probes.values():
            probe.unlink(missing_ok=True)
    if problems:
        raise ClusterError("; ".join(problems))
